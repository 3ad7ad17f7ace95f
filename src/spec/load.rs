//! Loading a workspace: reading its files, deserializing them with positions and turning every
//! YAML problem into a [`Diagnostic`], then handing the raw files to validation.
//!
//! Only [`load_workspace`] touches the filesystem; [`check_sources`] runs the same pipeline on
//! in-memory files, which is what the fuzz target and the unit tests drive. Nothing here may
//! panic on any input.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, DuplicateKeyPolicy};

use super::diagnostic::{self, Code, Diagnostic};
use super::env::EnvLookup;
use super::model::Workspace;
use super::raw::{FlowFile, TestFile, WorkspaceFile};
use super::source_map::SourceMap;
use super::validate;

/// How a workspace is loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Treat unset `${ENV}` references as errors instead of warnings.
    pub strict: bool,
    /// Where `${ENV}` references are read from.
    pub env: EnvLookup,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            strict: false,
            env: EnvLookup::process(),
        }
    }
}

/// The outcome of loading a workspace.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The resolved workspace; `Some` iff there is no error among `diagnostics`.
    pub workspace: Option<Workspace>,
    /// Every problem found, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

/// The workspace file name.
pub const WORKSPACE_FILE: &str = "switchyard.yaml";

/// Spec and contract files larger than this are refused, and never read past it: no real
/// file is anywhere near it, string input is not covered by the YAML parser's byte budget, and
/// a path such as `/dev/zero` never ends.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Why a file the workspace names could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// It does not exist, is not a file, or reading failed.
    #[error("{0}")]
    Unreadable(std::io::Error),
    /// It is larger than [`MAX_FILE_BYTES`].
    #[error("file is larger than {} MiB (the limit for spec and contract files)", MAX_FILE_BYTES / (1024 * 1024))]
    TooLarge,
    /// Its path leaves the workspace folder (`..`, an absolute path, or a symbolic link that
    /// points outside).
    #[error("path is outside the workspace folder")]
    Outside,
}

/// Reads and validates the workspace in `root`: `switchyard.yaml`, `flows/*.yaml` and
/// `tests/*.yaml` (each sorted by name) and the contracts the objects name.
pub fn load_workspace(root: &Path, options: &LoadOptions) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    let workspace_path = PathBuf::from(WORKSPACE_FILE);
    match read_capped(&root.join(WORKSPACE_FILE)) {
        Ok(text) => files.push((workspace_path, text)),
        Err(err) => diagnostics.push(Diagnostic::error(
            workspace_path,
            (1, 1),
            Code::FileUnreadable,
            format!("cannot read {WORKSPACE_FILE}: {err}"),
        )),
    }
    for folder in ["flows", "tests"] {
        for relative in yaml_files(root, folder) {
            match read_capped(&root.join(&relative)) {
                Ok(text) => files.push((relative, text)),
                Err(err) => diagnostics.push(Diagnostic::error(
                    relative,
                    (1, 1),
                    Code::FileUnreadable,
                    format!("cannot read file: {err}"),
                )),
            }
        }
    }
    let read = |relative: &Path| read_capped(&confine(root, relative)?);
    let mut loaded = analyze(root, &files, &read, options);
    diagnostics.append(&mut loaded.diagnostics);
    finish(loaded.workspace, diagnostics)
}

/// Validates in-memory files (paths relative to the workspace folder, such as
/// `switchyard.yaml`, `flows/a.yaml`, `contracts/offer.json`) with no environment variables
/// set. Performs no I/O; for fuzzing and tests.
pub fn check_sources(files: &[(PathBuf, String)]) -> Vec<Diagnostic> {
    let options = LoadOptions {
        strict: false,
        env: EnvLookup::empty(),
    };
    load_sources(Path::new("."), files, &options).diagnostics
}

/// Loads in-memory files as [`load_workspace`] loads a folder: the YAML files are recognised
/// by their paths, contracts are looked up among `files` by the path the objects name.
pub fn load_sources(root: &Path, files: &[(PathBuf, String)], options: &LoadOptions) -> Loaded {
    let yaml: Vec<(PathBuf, String)> = files
        .iter()
        .filter(|(path, _)| is_spec_file(path))
        .cloned()
        .collect();
    let mut diagnostics = Vec::new();
    if !yaml
        .iter()
        .any(|(path, _)| path == Path::new(WORKSPACE_FILE))
    {
        diagnostics.push(Diagnostic::error(
            WORKSPACE_FILE,
            (1, 1),
            Code::FileUnreadable,
            format!("{WORKSPACE_FILE} is missing"),
        ));
    }
    let read = |relative: &Path| {
        let wanted = inside(relative).ok_or(FileError::Outside)?;
        let (_, text) = files
            .iter()
            .find(|(path, _)| normalize(path) == wanted)
            .ok_or_else(|| FileError::Unreadable(std::io::ErrorKind::NotFound.into()))?;
        if text.len() > MAX_FILE_BYTES {
            return Err(FileError::TooLarge);
        }
        Ok(text.clone())
    };
    let mut loaded = analyze(root, &yaml, &read, options);
    diagnostics.append(&mut loaded.diagnostics);
    finish(loaded.workspace, diagnostics)
}

/// One deserialized file with its pointer index.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    /// Path relative to the workspace folder.
    pub(crate) file: PathBuf,
    /// Pointer -> position.
    pub(crate) map: SourceMap,
    /// The raw value, when the file deserialized.
    pub(crate) value: Option<T>,
}

/// Deserializes one YAML file; on failure, pushes a diagnostic and keeps the pointer index.
pub(crate) fn parse_yaml<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Parsed<T> {
    let file = file.to_path_buf();
    if text.len() > MAX_FILE_BYTES {
        diagnostics.push(Diagnostic::error(
            file.clone(),
            (1, 1),
            Code::FileUnreadable,
            format!("file is larger than {MAX_FILE_BYTES} bytes"),
        ));
        return Parsed {
            file,
            map: SourceMap::default(),
            value: None,
        };
    }
    let map = SourceMap::build(text);
    // A syntax error is reported once, at the parser's position, rather than as whatever
    // type error the deserializer hits first on the malformed node.
    if let Some((message, position)) = map.syntax_error() {
        diagnostics.push(Diagnostic::error(
            file.clone(),
            position,
            Code::YamlSyntax,
            format!("invalid YAML: {message}"),
        ));
        return Parsed {
            file,
            map,
            value: None,
        };
    }
    let value = match serde_saphyr::from_str_with_options::<T>(text, yaml_options()) {
        Ok(value) => Some(value),
        Err(err) => {
            diagnostics.push(yaml_diagnostic(&file, &err));
            None
        }
    };
    Parsed { file, map, value }
}

fn analyze(
    root: &Path,
    files: &[(PathBuf, String)],
    read_contract: &dyn Fn(&Path) -> Result<String, FileError>,
    options: &LoadOptions,
) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut workspace = None;
    let mut flows = Vec::new();
    let mut tests = Vec::new();
    for (path, text) in files {
        if path == Path::new(WORKSPACE_FILE) {
            workspace = Some(parse_yaml::<WorkspaceFile>(path, text, &mut diagnostics));
        } else if path.starts_with("flows") {
            flows.push(parse_yaml::<FlowFile>(path, text, &mut diagnostics));
        } else if path.starts_with("tests") {
            tests.push(parse_yaml::<TestFile>(path, text, &mut diagnostics));
        }
    }
    let input = validate::Input {
        root,
        workspace,
        flows,
        tests,
        read_contract,
        options,
    };
    let resolved = validate::validate(input, &mut diagnostics);
    Loaded {
        workspace: resolved,
        diagnostics,
    }
}

fn finish(workspace: Option<Workspace>, mut diagnostics: Vec<Diagnostic>) -> Loaded {
    diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    let has_error = diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        workspace: if has_error { None } else { workspace },
        diagnostics,
    }
}

fn yaml_options() -> serde_saphyr::Options {
    // A tight budget: spec files are small, so anything near these limits is an attack
    // (billion laughs, deep nesting) or a mistake, and is refused early.
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_depth = 64;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    serde_saphyr::options! {
        budget: Some(budget),
        duplicate_keys: DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

/// Turns a deserialization error into a diagnostic with the best code and hint we can infer.
fn yaml_diagnostic(file: &Path, err: &serde_saphyr::Error) -> Diagnostic {
    let position = err
        .location()
        .map(|location| {
            (
                usize::try_from(location.line()).unwrap_or(1),
                usize::try_from(location.column()).unwrap_or(1),
            )
        })
        .unwrap_or((1, 1));
    let full = err.to_string();
    let first_line = full.lines().next().unwrap_or("invalid YAML").trim();
    // serde-saphyr appends the position, which the diagnostic carries already.
    let message = match first_line.rfind(" at line ") {
        Some(index) => &first_line[..index],
        None => first_line,
    };
    let lower = message.to_ascii_lowercase();
    let (code, message, hint) = if let Some(rest) = message.strip_prefix("duplicate mapping key: ")
    {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest)
            .trim();
        (
            Code::DuplicateKey,
            format!("duplicate key \"{key}\""),
            Some("remove one of the two entries".to_owned()),
        )
    } else if lower.contains("duplicate") {
        (Code::DuplicateKey, message.to_owned(), None)
    } else if lower.starts_with("unknown field") {
        let (message, hint) = unknown_field(message);
        (Code::UnknownField, message, hint)
    } else if is_syntax_error(err, &lower) {
        (Code::YamlSyntax, message.to_owned(), None)
    } else {
        (Code::InvalidValue, message.to_owned(), None)
    };
    Diagnostic::error(file, position, code, message).with_hint(hint)
}

fn is_syntax_error(err: &serde_saphyr::Error, lower: &str) -> bool {
    matches!(
        err,
        serde_saphyr::Error::Eof { .. } | serde_saphyr::Error::MultipleDocuments { .. }
    ) || [
        "while parsing",
        "while scanning",
        "did not find expected",
        "mapping values are not allowed",
        "could not find expected",
        "unexpected end",
        "budget",
        "invalid indentation",
        "unclosed",
        "yaml syntax",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// `unknown field `nmae`, expected one of version, name, model` -> a message naming the field
/// and a `did you mean "name"?` hint (or the list of expected fields).
pub(crate) fn unknown_field(message: &str) -> (String, Option<String>) {
    let unknown = message.split('`').nth(1).unwrap_or_default();
    let expected: Vec<&str> = message
        .split_once("expected one of ")
        .or_else(|| message.split_once("expected "))
        .map(|(_, list)| {
            list.split(',')
                .map(|name| name.trim().trim_matches('`'))
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let hint = diagnostic::did_you_mean(unknown, expected.iter().copied()).or_else(|| {
        (!expected.is_empty()).then(|| format!("expected one of: {}", expected.join(", ")))
    });
    (format!("unknown field \"{unknown}\""), hint)
}

fn yaml_files(root: &Path, folder: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && is_yaml(path))
        .filter_map(|path| path.file_name().map(|name| Path::new(folder).join(name)))
        .collect();
    files.sort();
    files
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|ext| ext.to_str()),
        Some("yaml" | "yml")
    )
}

fn is_spec_file(path: &Path) -> bool {
    path == Path::new(WORKSPACE_FILE)
        || (is_yaml(path)
            && path.components().count() == 2
            && (path.starts_with("flows") || path.starts_with("tests")))
}

/// Reads a whole file as UTF-8, but never more than [`MAX_FILE_BYTES`] of it.
pub(crate) fn read_capped(path: &Path) -> Result<String, FileError> {
    let file = std::fs::File::open(path).map_err(FileError::Unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Unreadable)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| {
        FileError::Unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// Where a path the workspace names really is, if it stays inside the workspace folder:
/// checked on the path as written (no absolute path, no `..` above the root), then on the
/// file it resolves to, symbolic links followed. A contract is part of the workspace that is
/// reviewed and deployed together; reading `/proc/self/environ` or another service's files
/// through it is never intended, so there is no opt-out.
pub(crate) fn confine(root: &Path, relative: &Path) -> Result<PathBuf, FileError> {
    let relative = inside(relative).ok_or(FileError::Outside)?;
    let path = root.join(&relative);
    let real_root = root.canonicalize().map_err(FileError::Unreadable)?;
    let real = path.canonicalize().map_err(FileError::Unreadable)?;
    if real.starts_with(&real_root) {
        Ok(real)
    } else {
        Err(FileError::Outside)
    }
}

/// `path` without `.` and resolved `..` components, if it stays below the folder it is
/// relative to.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut kept = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => kept.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                if !kept.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(kept)
}

/// Drops `.` components so `./contracts/a.json` and `contracts/a.json` compare equal.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests;
