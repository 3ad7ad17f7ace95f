//! Settings of the file connector: a system's folder (`systems.NAME.file:`), and the file a
//! flow reads (`from:`) or writes (`to:`) in it, or the drop folder it takes files from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Connector settings of a file system.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSystemConfig {
    /// Folder the flow's file paths are relative to; relative to the workspace folder itself.
    pub dir: String,
}

/// A flow's `from:` on a file system (besides `system` and `author`): one named file
/// (`path`), or a drop folder (`files` and `archive`) whose files are each read once.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFromConfig {
    /// Path of the input file, relative to the system's folder. Give `path` or `files`.
    #[serde(default)]
    pub path: Option<String>,
    /// The input format. Defaults to `jsonl`.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Drop folder mode: the files to take, relative to the system's folder, as a folder and
    /// a file-name pattern where `*` matches any run of characters and `?` one character
    /// (`statements/*.csv`). Each file is read once, identified by the SHA-256 of its
    /// content, then moved to `archive`; a file with the content of one read before is
    /// archived unread and reported as a duplicate. Names writers use while writing (dotfiles,
    /// `*.part`, `*.tmp`, `*.partial`, `*.filepart`, `*~`) and empty files are left alone.
    #[serde(default)]
    pub files: Option<String>,
    /// Drop folder mode: the folder, relative to the system's folder, files are moved to once
    /// every record of theirs is committed. Required with `files`; must not be the folder
    /// `files` reads.
    #[serde(default)]
    pub archive: Option<String>,
    /// Drop folder mode: how long a file must have gone unmodified (its modification time at
    /// least this old) before it is read, so a file still being written in place is not
    /// taken; its size and modification time must also be unchanged after it is hashed.
    /// Defaults to `10s`.
    #[serde(default)]
    pub settle: Option<String>,
}

/// A flow's `to:` on a file system (besides `system`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileToConfig {
    /// Path of the output file, relative to the system's folder.
    #[serde(default)]
    pub path: Option<String>,
    /// The output format. Only `jsonl` is written so far.
    #[serde(default)]
    pub format: Option<FileFormat>,
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row; every value is read as a string.
    Csv,
}
