//! Drop folders (`from: { files, archive }`): each file landing in a folder is read exactly
//! once, identified by the SHA-256 of its content, then moved to the archive folder.
//!
//! Exactly once rests on the checkpoint, which the runtime commits atomically with each
//! batch's records. The position names the file being read (name, hash, size, byte offset,
//! line) and the files read to their end since the store last heard of them (`finished`).
//! Once a position is durably committed ([`Source::committed`]), each finished file's hash is
//! recorded as a marker in the state store and the file is archived; positions made after
//! that no longer carry it. So a crash anywhere leaves either a committed position that still
//! names the file (the restart records and archives it without reading it again) or a marker
//! (the file, if it is still there, is archived unread). A file is archived only after its
//! last batch is committed, and read only up to the bytes that were hashed.
//!
//! Markers reuse the cross-reference table (both store backends) rather than adding one: the
//! pseudo-object `file-drop:<flow>`, system `sha256`, the content hash as the external ID and
//! the name the content first came under as the record key. The first name wins, so a later
//! file with the same content is recognised as a duplicate of it.
//!
//! A file is taken only when it is complete: names writers use while writing are skipped
//! ([`is_in_progress_name`]), an empty file is left for later, the file must not have been
//! modified for `settle`, and its size and modification time must be the same after it was
//! hashed as before. This module must not touch records: it hands [`FileSource`] batches on.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config::FileFormat;
use super::pattern::{DropPattern, is_in_progress_name, normalize};
use super::source::FileSource;
use crate::connectors::{Batch, BatchRecords, ConnectorError, Source, source_unavailable};
use crate::store::{CrossReference, Store, StoreError};

/// How long a file must go unmodified before it is read, when `settle` is not given.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(10);

/// The cross-reference system under which content hashes are recorded.
const HASH_SYSTEM: &str = "sha256";

/// What a drop folder source reads and where files go.
#[derive(Debug, Clone)]
pub struct DropFolder {
    /// The system's folder: file names are relative to it.
    pub root: PathBuf,
    /// The folder and file-name pattern.
    pattern: DropPattern,
    /// The archive folder, relative to `root`.
    archive: String,
    /// The input format.
    pub format: FileFormat,
    /// How long a file must go unmodified before it is read.
    pub settle: Duration,
}

/// A drop folder being read.
pub struct DropSource {
    flow: String,
    store: Store,
    folder: DropFolder,
    /// Files listed and not taken yet, in processing order; `None` until listed.
    queue: Option<VecDeque<Listed>>,
    /// The file being read.
    current: Option<Reading>,
    /// Files read to their end whose marker the store may not have yet: every position
    /// carries them until [`Source::committed`] has recorded them.
    finished: Vec<Finished>,
}

/// The checkpoint of a drop folder.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DropPosition {
    /// The file being read, and how far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<InProgress>,
    /// Files read to their end, whose marker and archiving may still be due.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    finished: Vec<Done>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InProgress {
    name: String,
    sha256: String,
    size: u64,
    offset: u64,
    line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Done {
    name: String,
    sha256: String,
}

/// A finished file, with what it looked like when it was hashed (to archive it only if it
/// still does).
#[derive(Debug, Clone)]
struct Finished {
    done: Done,
    seen: Option<Stat>,
}

struct Reading {
    name: String,
    sha256: String,
    stat: Stat,
    source: FileSource,
}

/// A listed file.
#[derive(Debug, Clone)]
struct Listed {
    /// Relative to the system's folder, `/`-separated.
    name: String,
    stat: Stat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    modified: SystemTime,
}

impl DropFolder {
    /// A drop folder under `root` (the system's folder); errors name the setting to fix.
    pub fn new(
        root: PathBuf,
        pattern: &str,
        archive: &str,
        format: FileFormat,
        settle: Duration,
    ) -> Result<Self, String> {
        let pattern = DropPattern::parse(pattern)?;
        let archive = normalize(archive);
        if archive == pattern.folder {
            return Err(format!(
                "archive `{archive}` is the folder `files` reads; archive into another \
                 folder (a subfolder such as `{}` works: subfolders are not read)",
                if archive.is_empty() {
                    "archive".to_owned()
                } else {
                    format!("{archive}/archive")
                }
            ));
        }
        Ok(Self {
            root,
            pattern,
            archive,
            format,
            settle,
        })
    }
}

impl DropSource {
    /// Opens a drop folder at `position` (a checkpoint written by this source): records and
    /// archives the files a crash left read but not archived, and resumes the file being read.
    pub async fn open(
        flow: &str,
        store: &Store,
        folder: DropFolder,
        position: &Value,
    ) -> Result<Self, ConnectorError> {
        let position: DropPosition = match position {
            Value::Null => DropPosition::default(),
            other => serde_json::from_value(other.clone()).map_err(|err| {
                ConnectorError::spec(format!(
                    "flow `{flow}`: the checkpoint {other} is not a drop-folder position \
                     ({err}); was `from:` changed from `path:` to `files:`? Give the drop \
                     folder flow a new name, or reset its checkpoint"
                ))
            })?,
        };
        let mut source = Self {
            flow: flow.to_owned(),
            store: store.clone(),
            folder,
            queue: None,
            current: None,
            finished: Vec::new(),
        };
        for done in position.finished {
            let finished = Finished { done, seen: None };
            source.record_finished(&finished).await?;
        }
        if let Some(file) = position.file {
            source.resume(file).await?;
        }
        Ok(source)
    }

    /// Goes on reading the file a previous run was in, if it is still there, unchanged.
    async fn resume(&mut self, file: InProgress) -> Result<(), ConnectorError> {
        let path = self.folder.root.join(&file.name);
        let hashed = match stat(&path) {
            Ok(Some(stat)) if stat.size == file.size => hash_file(path.clone())
                .await?
                .map(|(sha256, size)| (sha256, size, stat)),
            Ok(_) => None,
            Err(err) => return Err(source_unavailable(format!("{}: {err}", file.name))),
        };
        match hashed {
            Some((sha256, size, stat)) if sha256 == file.sha256 && size == file.size => {
                tracing::info!(
                    flow = %self.flow, file = %file.name, line = file.line,
                    "Resuming a dropped file after its last committed line."
                );
                let reader = FileSource::open_at(
                    &path,
                    &file.name,
                    self.folder.format,
                    (file.offset, file.line),
                    file.size,
                )?
                .naming_rows();
                self.current = Some(Reading {
                    name: file.name,
                    sha256,
                    stat,
                    source: reader,
                });
            }
            _ => {
                // Its committed records stay delivered; the rest of it is gone with it.
                tracing::error!(
                    flow = %self.flow, file = %file.name, line = file.line,
                    "A dropped file was removed or changed while it was being read; the \
                     records after the last committed line were not read."
                );
                self.audit(
                    "file-drop-vanished",
                    json!({"file": file.name, "sha256": file.sha256, "line": file.line}),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The position after the current state; `file` is the file being read, if any.
    fn position(&self, file: Option<InProgress>) -> Value {
        let position = DropPosition {
            file,
            finished: self.finished.iter().map(|f| f.done.clone()).collect(),
        };
        serde_json::to_value(position).unwrap_or(Value::Null)
    }

    /// Takes the next complete file that is not a duplicate; `false` when none is left.
    async fn take_next(&mut self) -> Result<bool, ConnectorError> {
        if self.queue.is_none() {
            self.queue = Some(self.list().await?);
        }
        while let Some(listed) = self.queue.as_mut().and_then(VecDeque::pop_front) {
            let path = self.folder.root.join(&listed.name);
            let before = match stat(&path) {
                Ok(Some(stat)) => stat,
                // Taken away since the listing: nothing of it to read.
                Ok(None) => continue,
                Err(err) => return Err(source_unavailable(format!("{}: {err}", listed.name))),
            };
            if !self.settled(&listed.name, before) {
                continue;
            }
            let Some((sha256, size)) = hash_file(path.clone()).await? else {
                continue;
            };
            let after = stat(&path).ok().flatten();
            if size != before.size || after != Some(before) {
                tracing::info!(
                    flow = %self.flow, file = %listed.name,
                    "Dropped file changed while it was hashed; left for a later run."
                );
                continue;
            }
            if self.is_duplicate(&listed.name, &sha256, before).await? {
                continue;
            }
            tracing::info!(
                flow = %self.flow, file = %listed.name, sha256 = %sha256, bytes = size,
                "Reading a dropped file."
            );
            let reader =
                FileSource::open_at(&path, &listed.name, self.folder.format, (0, 0), size)?
                    .naming_rows();
            self.current = Some(Reading {
                name: listed.name,
                sha256,
                stat: before,
                source: reader,
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether a file has gone unmodified for the settle interval.
    fn settled(&self, name: &str, stat: Stat) -> bool {
        let age = SystemTime::now()
            .duration_since(stat.modified)
            .unwrap_or(Duration::ZERO);
        if age < self.folder.settle {
            tracing::info!(
                flow = %self.flow, file = %name, modified_ago_ms = age.as_millis() as u64,
                settle_ms = self.folder.settle.as_millis() as u64,
                "Dropped file modified too recently to be complete; left for a later run."
            );
            return false;
        }
        true
    }

    /// Archives a file whose content was read before (by this run, or as the store's marker
    /// says), reporting it; `true` when it was such a file.
    async fn is_duplicate(
        &mut self,
        name: &str,
        sha256: &str,
        stat: Stat,
    ) -> Result<bool, ConnectorError> {
        // This run's finished files first: their markers may not be in the store yet.
        let local = self
            .finished
            .iter()
            .map(|f| &f.done)
            .find(|d| d.sha256 == sha256)
            .map(|d| d.name.clone());
        let first = match local {
            Some(name) => Some(name),
            None => self
                .store
                .xref_key(&marker_object(&self.flow), HASH_SYSTEM, sha256)
                .await
                .map_err(store_error)?,
        };
        let Some(first) = first else {
            return Ok(false);
        };
        let archived_as = self.archive(name, sha256, Some(stat)).await?;
        if first == name {
            // A run recorded it and stopped before the file was moved: it is read already.
            tracing::info!(
                flow = %self.flow, file = %name, sha256 = %sha256,
                "Dropped file already read; archived without reading it again."
            );
        } else {
            tracing::warn!(
                flow = %self.flow, file = %name, sha256 = %sha256, first = %first,
                "Dropped file has the content of one read before; archived unread as a \
                 duplicate."
            );
            self.audit(
                "file-drop-duplicate",
                json!({"file": name, "sha256": sha256, "duplicate_of": first,
                       "archived_as": archived_as}),
            )
            .await?;
        }
        Ok(true)
    }

    /// Lists the drop folder: matching, complete-looking regular files, by name, then
    /// modification time.
    async fn list(&self) -> Result<VecDeque<Listed>, ConnectorError> {
        let folder = self.folder.clone();
        let flow = self.flow.clone();
        let skip = self.current.as_ref().map(|r| r.name.clone());
        tokio::task::spawn_blocking(move || list_folder(&flow, &folder, skip.as_deref()))
            .await
            .map_err(|err| ConnectorError::internal(format!("drop folder listing: {err}")))?
    }

    /// Records a finished file's hash in the store, then archives it (unless it changed since
    /// it was hashed).
    async fn record_finished(&mut self, finished: &Finished) -> Result<(), ConnectorError> {
        let done = &finished.done;
        let marker = CrossReference {
            object: marker_object(&self.flow),
            system: HASH_SYSTEM.to_owned(),
            external_id: done.sha256.clone(),
            record_key: done.name.clone(),
        };
        self.store
            .put_xref(&marker, &self.flow)
            .await
            .map_err(store_error)?;
        let path = self.folder.root.join(&done.name);
        let current = stat(&path).map_err(|e| source_unavailable(format!("{}: {e}", done.name)))?;
        let Some(current) = current else {
            // Archived before the crash that brought us here.
            return Ok(());
        };
        let unchanged = match finished.seen {
            Some(seen) => seen == current,
            // After a restart nothing was seen in this process: the content decides.
            None => hash_file(path)
                .await?
                .is_some_and(|(sha256, _)| sha256 == done.sha256),
        };
        if !unchanged {
            tracing::error!(
                flow = %self.flow, file = %done.name,
                "Dropped file changed after it was read; left in place. Write drops under a \
                 temporary name and rename them when complete."
            );
            return self
                .audit(
                    "file-drop-changed",
                    json!({"file": done.name, "sha256": done.sha256}),
                )
                .await;
        }
        let archived_as = self.archive(&done.name, &done.sha256, None).await?;
        tracing::info!(
            flow = %self.flow, file = %done.name, archived_as = %archived_as,
            "Dropped file read and committed; archived."
        );
        self.audit(
            "file-drop-archived",
            json!({"file": done.name, "sha256": done.sha256, "archived_as": archived_as}),
        )
        .await
    }

    /// Moves `name` into the archive folder, under its own name or, when that is taken, a
    /// name with the start of its hash; returns the name it got, relative to the system's
    /// folder. `expected` is the file's stat when it was looked at, if it must still match.
    async fn archive(
        &self,
        name: &str,
        sha256: &str,
        expected: Option<Stat>,
    ) -> Result<String, ConnectorError> {
        let root = self.folder.root.clone();
        let archive = self.folder.archive.clone();
        let (name, sha256) = (name.to_owned(), sha256.to_owned());
        tokio::task::spawn_blocking(move || {
            archive_file(&root, &archive, &name, &sha256, expected)
                .map_err(|err| source_unavailable(format!("archiving {name}: {err}")))
        })
        .await
        .map_err(|err| ConnectorError::internal(format!("archiving a dropped file: {err}")))?
    }

    async fn audit(&self, action: &str, detail: Value) -> Result<(), ConnectorError> {
        self.store
            .audit(Some(&self.flow), action, "runtime", &detail)
            .await
            .map_err(store_error)
    }
}

#[async_trait::async_trait]
impl Source for DropSource {
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, ConnectorError> {
        if self.current.is_none() && !self.take_next().await? {
            return Ok(None);
        }
        let Some(reading) = self.current.as_mut() else {
            return Ok(None);
        };
        let batch = reading.source.next_batch(max_records)?;
        let at_end = match &batch {
            Some(_) => reading.source.at_end()?,
            // Nothing left (a file of no records): its end still has to be committed.
            None => true,
        };
        let (offset, line) = reading.source.resume_point();
        let file = if at_end {
            let Some(reading) = self.current.take() else {
                return Ok(None);
            };
            self.finished.push(Finished {
                done: Done {
                    name: reading.name,
                    sha256: reading.sha256,
                },
                seen: Some(reading.stat),
            });
            None
        } else {
            Some(InProgress {
                name: reading.name.clone(),
                sha256: reading.sha256.clone(),
                size: reading.stat.size,
                offset,
                line,
            })
        };
        let position = self.position(file);
        let mut batch = batch.unwrap_or(Batch {
            records: BatchRecords::Values(Vec::new()),
            position: Value::Null,
        });
        batch.position = position;
        Ok(Some(batch))
    }

    async fn committed(&mut self, position: &Value) -> Result<(), ConnectorError> {
        let Ok(position) = serde_json::from_value::<DropPosition>(position.clone()) else {
            return Ok(());
        };
        for done in position.finished {
            let Some(at) = self.finished.iter().position(|f| f.done == done) else {
                continue;
            };
            let finished = self.finished[at].clone();
            self.record_finished(&finished).await?;
            // Recorded: later positions need not carry it.
            self.finished.remove(at);
        }
        Ok(())
    }
}

fn marker_object(flow: &str) -> String {
    format!("file-drop:{flow}")
}

fn store_error(err: StoreError) -> ConnectorError {
    ConnectorError::internal(format!("drop folder state: {err}"))
}

/// A file's size and modification time; `None` when it does not exist.
fn stat(path: &Path) -> std::io::Result<Option<Stat>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stat {
            size: meta.len(),
            modified: meta.modified()?,
        })),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The SHA-256 (hex) and length of a file's content, off the async workers; `None` when the
/// file is gone.
async fn hash_file(path: PathBuf) -> Result<Option<(String, u64)>, ConnectorError> {
    let label = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let read = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buf[..read]);
            size += read as u64;
        }
        Ok(Some((hex::encode(hasher.finalize()), size)))
    })
    .await
    .map_err(|err| ConnectorError::internal(format!("hashing {label}: {err}")))?
    .map_err(|err| source_unavailable(format!("{label}: {err}")))
}

/// The files of the drop folder that may be read, in processing order.
fn list_folder(
    flow: &str,
    folder: &DropFolder,
    skip: Option<&str>,
) -> Result<VecDeque<Listed>, ConnectorError> {
    let dir = folder.root.join(&folder.pattern.folder);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // A drop folder nobody dropped into yet.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(err) => return Err(source_unavailable(format!("{}: {err}", dir.display()))),
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| source_unavailable(format!("{}: {err}", dir.display())))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(
                flow = %flow, file = %entry.path().display(),
                "Dropped file name is not UTF-8; skipped. Rename it to be read."
            );
            continue;
        };
        if !folder.pattern.matches(&file_name) || is_in_progress_name(&file_name) {
            continue;
        }
        let name = if folder.pattern.folder.is_empty() {
            file_name
        } else {
            format!("{}/{file_name}", folder.pattern.folder)
        };
        if skip == Some(name.as_str()) {
            continue;
        }
        let meta = match std::fs::metadata(entry.path()) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(source_unavailable(format!("{name}: {err}"))),
        };
        // An empty file is most likely one a writer has just created.
        if !meta.is_file() || meta.len() == 0 {
            continue;
        }
        let modified = meta
            .modified()
            .map_err(|err| source_unavailable(format!("{name}: {err}")))?;
        listed.push(Listed {
            name,
            stat: Stat {
                size: meta.len(),
                modified,
            },
        });
    }
    listed.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.stat.modified.cmp(&b.stat.modified))
    });
    Ok(listed.into())
}

/// Moves `name` into `archive` (both relative to `root`) unless it no longer looks as
/// `expected`; returns the archived name.
fn archive_file(
    root: &Path,
    archive: &str,
    name: &str,
    sha256: &str,
    expected: Option<Stat>,
) -> std::io::Result<String> {
    let from = root.join(name);
    if let Some(expected) = expected
        && stat(&from)? != Some(expected)
    {
        return Err(std::io::Error::other(
            "the file changed since it was hashed; left in place",
        ));
    }
    let dir = root.join(archive);
    std::fs::create_dir_all(&dir)?;
    let file_name = Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name);
    let (stem, extension) = match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file_name, String::new()),
    };
    let short = sha256.get(..12).unwrap_or(sha256);
    let candidates = std::iter::once(file_name.to_owned())
        .chain(std::iter::once(format!("{stem}.{short}{extension}")))
        .chain((1..1000).map(|n| format!("{stem}.{short}-{n}{extension}")));
    for candidate in candidates {
        let to = dir.join(&candidate);
        if to.exists() {
            continue;
        }
        std::fs::rename(&from, &to)?;
        let archived = if archive.is_empty() {
            candidate
        } else {
            format!("{archive}/{candidate}")
        };
        return Ok(archived);
    }
    Err(std::io::Error::other(format!(
        "1000 files named like {file_name} are archived already; clear the archive folder"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("switchyard-drop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        dir
    }

    fn drop_lines(root: &Path, name: &str, ids: std::ops::Range<u32>) {
        let text: String = ids.map(|id| format!("{{\"id\":{id}}}\n")).collect();
        let path = root.join("in").join(name);
        std::fs::write(&path, text).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    }

    async fn open(root: &Path, store: &Store, position: &Value) -> DropSource {
        let folder = DropFolder::new(
            root.to_owned(),
            "in/*.jsonl",
            "done",
            FileFormat::Jsonl,
            Duration::from_secs(1),
        )
        .unwrap();
        DropSource::open("f", store, folder, position)
            .await
            .unwrap()
    }

    /// Reads every batch without telling the source anything was committed (as if each
    /// commit landed and the process died before hearing of it); returns the first line of
    /// each batch and the positions.
    async fn read_all(source: &mut DropSource, max: usize) -> (Vec<u64>, Vec<Value>) {
        let (mut lines, mut positions) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let Some(batch) = source.next_batch(max).await.unwrap() else {
                return (lines, positions);
            };
            lines.push(batch.line(0).unwrap_or(0));
            positions.push(batch.position);
        }
        panic!("more than 100 batches");
    }

    #[tokio::test]
    async fn a_crash_between_commit_and_archive_neither_rereads_nor_loses() {
        let root = folder("crash-archive");
        drop_lines(&root, "a.jsonl", 0..3);
        drop_lines(&root, "b.jsonl", 3..5);
        let store = Store::in_memory().unwrap();
        let mut source = open(&root, &store, &Value::Null).await;
        let (lines, positions) = read_all(&mut source, 2).await;
        // a: lines 1-2, line 3 (its end); b: lines 1-2 (its end).
        assert_eq!(lines, [1, 3, 1]);
        assert_eq!(
            positions[1]["finished"],
            json!([{"name": "in/a.jsonl", "sha256": positions[0]["file"]["sha256"]}])
        );
        assert_eq!(positions[2]["finished"].as_array().unwrap().len(), 2);
        assert!(positions[2].get("file").is_none());
        // Nothing was said to be committed: nothing is archived.
        assert!(root.join("in/a.jsonl").exists() && root.join("in/b.jsonl").exists());

        // The last position was committed, then the process died: the restart archives both
        // files without reading them.
        let mut restarted = open(&root, &store, &positions[2]).await;
        assert!(restarted.next_batch(2).await.unwrap().is_none());
        assert!(root.join("done/a.jsonl").exists() && root.join("done/b.jsonl").exists());
        assert!(!root.join("in/a.jsonl").exists());
        // A third start from the same position (its archiving done) is just as quiet.
        let mut again = open(&root, &store, &positions[2]).await;
        assert!(again.next_batch(2).await.unwrap().is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_restart_resumes_mid_file_after_the_last_committed_line() {
        let root = folder("resume");
        drop_lines(&root, "a.jsonl", 0..2);
        drop_lines(&root, "b.jsonl", 2..7);
        let store = Store::in_memory().unwrap();
        let mut source = open(&root, &store, &Value::Null).await;
        let (_, positions) = read_all(&mut source, 2).await;
        // The commit of b's first batch is the last that landed.
        let committed = &positions[1];
        assert_eq!(committed["file"]["name"], "in/b.jsonl");
        assert_eq!(committed["file"]["line"], 2);
        let mut restarted = open(&root, &store, committed).await;
        assert!(
            root.join("done/a.jsonl").exists(),
            "a, finished, is archived"
        );
        let batch = restarted.next_batch(10).await.unwrap().unwrap();
        assert_eq!(batch.line(0), Some(3));
        assert_eq!(batch.get(0).unwrap().original(), b"{\"id\":4}");
        assert_eq!(batch.len(), 3);
        restarted.committed(&batch.position).await.unwrap();
        assert!(root.join("done/b.jsonl").exists());
        assert!(restarted.next_batch(10).await.unwrap().is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_file_replaced_while_being_read_is_not_resumed_into_other_content() {
        let root = folder("replaced");
        drop_lines(&root, "a.jsonl", 0..4);
        let store = Store::in_memory().unwrap();
        let mut source = open(&root, &store, &Value::Null).await;
        let first = source.next_batch(2).await.unwrap().unwrap();
        drop_lines(&root, "a.jsonl", 10..14);
        let mut restarted = open(&root, &store, &first.position).await;
        // The new content is a new file, read from its start.
        let batch = restarted.next_batch(10).await.unwrap().unwrap();
        assert_eq!(batch.line(0), Some(1));
        assert_eq!(batch.get(0).unwrap().original(), b"{\"id\":10}");
        let trail = store.audit_trail(10).await.unwrap();
        assert!(
            trail.iter().any(|e| e.action == "file-drop-vanished"),
            "{trail:?}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn a_file_appended_to_while_read_is_read_as_hashed_and_left_in_place() {
        let root = folder("appended");
        drop_lines(&root, "a.jsonl", 0..3);
        let store = Store::in_memory().unwrap();
        let mut source = open(&root, &store, &Value::Null).await;
        let first = source.next_batch(2).await.unwrap().unwrap();
        assert_eq!(first.len(), 2);
        let path = root.join("in/a.jsonl");
        let mut file = std::fs::File::options().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"{\"id\":99}\n").unwrap();
        // Only the bytes hashed are read: the appended line is not part of this file.
        let last = source.next_batch(10).await.unwrap().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last.get(0).unwrap().original(), b"{\"id\":2}");
        assert!(source.next_batch(10).await.unwrap().is_none());
        source.committed(&last.position).await.unwrap();
        assert!(path.exists(), "changed since it was hashed: not archived");
        let trail = store.audit_trail(10).await.unwrap();
        assert!(
            trail.iter().any(|e| e.action == "file-drop-changed"),
            "{trail:?}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_archive_must_not_be_the_folder_read() {
        let err = DropFolder::new(
            "/x".into(),
            "in/*.csv",
            "./in/",
            FileFormat::Csv,
            DEFAULT_SETTLE,
        )
        .unwrap_err();
        assert!(err.contains("is the folder `files` reads"), "{err}");
        assert!(
            DropFolder::new(
                "/x".into(),
                "*.csv",
                "archive",
                FileFormat::Csv,
                DEFAULT_SETTLE
            )
            .is_ok()
        );
    }
}
