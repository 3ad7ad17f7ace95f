//! Settings of the file connector: a system's folder (`systems.NAME.file:`), and the file a
//! flow reads (`from:`) or writes (`to:`) in it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Connector settings of a file system.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSystemConfig {
    /// Folder the flow's file paths are relative to; relative to the workspace folder itself.
    pub dir: String,
}

/// A flow's `from:` on a file system (besides `system` and `author`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFromConfig {
    /// Path of the input file, relative to the system's folder.
    #[serde(default)]
    pub path: Option<String>,
    /// The input format. Defaults to `jsonl`.
    #[serde(default)]
    pub format: Option<FileFormat>,
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
