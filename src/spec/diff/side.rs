//! One side of a diff, parsed: the workspace file, each flow by name and each object's
//! contract, as JSON with a pointer index for positions. Sides come as in-memory files (read
//! from a folder or from a git revision by the caller), so nothing here does I/O.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

use crate::spec::load::WORKSPACE_FILE;
use crate::spec::source_map::SourceMap;

/// One YAML or JSON document of a side.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Path relative to the workspace folder.
    pub file: PathBuf,
    /// Its content as JSON.
    pub value: Value,
    /// Pointer -> position (empty for JSON contracts).
    pub map: SourceMap,
}

/// A workspace, parsed for comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// How the user named it (`main:flows`, `flows`).
    pub label: String,
    /// `switchyard.yaml`.
    pub workspace: Doc,
    /// Each flow by its `flow:` name, in file order.
    pub flows: IndexMap<String, Doc>,
    /// Each object's contract schema (the pointed-to schema for `file#/pointer`), when found.
    pub contracts: IndexMap<String, Value>,
}

impl Side {
    /// Parses a side's files. The caller validated them first; a file that does not parse
    /// here is left out rather than guessed at.
    pub fn parse(label: &str, files: &[(PathBuf, String)]) -> Side {
        let find = |path: &Path| {
            files
                .iter()
                .find(|(p, _)| normalize(p) == normalize(path))
                .map(|(_, text)| text.as_str())
        };
        let workspace = find(Path::new(WORKSPACE_FILE))
            .map(|text| yaml_doc(Path::new(WORKSPACE_FILE), text))
            .unwrap_or_else(|| Doc {
                file: PathBuf::from(WORKSPACE_FILE),
                value: Value::Null,
                map: SourceMap::default(),
            });
        let mut flow_files: Vec<&(PathBuf, String)> = files
            .iter()
            .filter(|(path, _)| {
                path.parent() == Some(Path::new("flows"))
                    && matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml")
                    )
            })
            .collect();
        flow_files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut flows = IndexMap::new();
        for (path, text) in flow_files {
            let doc = yaml_doc(path, text);
            if let Some(name) = doc.value.get("flow").and_then(Value::as_str) {
                flows.insert(name.to_owned(), doc);
            }
        }
        let mut contracts = IndexMap::new();
        if let Some(objects) = workspace.value.get("objects").and_then(Value::as_object) {
            for (name, object) in objects {
                let Some(reference) = object.get("contract").and_then(Value::as_str) else {
                    continue;
                };
                let (path, pointer) = reference.split_once('#').unwrap_or((reference, ""));
                let Some(text) = find(Path::new(path)) else {
                    continue;
                };
                let document: Option<Value> = if path.ends_with(".json") {
                    serde_json::from_str(text).ok()
                } else {
                    serde_saphyr::from_str(text).ok()
                };
                let Some(document) = document else { continue };
                let schema = resolve_refs(
                    &document,
                    document.pointer(pointer).unwrap_or(&Value::Null),
                    0,
                );
                contracts.insert(name.clone(), schema);
            }
        }
        Side {
            label: label.to_owned(),
            workspace,
            flows,
            contracts,
        }
    }
}

fn yaml_doc(path: &Path, text: &str) -> Doc {
    Doc {
        file: path.to_path_buf(),
        value: serde_saphyr::from_str::<Value>(text).unwrap_or(Value::Null),
        map: SourceMap::build(text),
    }
}

/// `a/./b` and `a/b` are one file.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// Inlines local `$ref`s (`#/...`) so two schemas compare by what they accept, not by how
/// they are factored. Bounded: a recursive schema stops at a depth and keeps the `$ref`.
fn resolve_refs(document: &Value, node: &Value, depth: usize) -> Value {
    const MAX_DEPTH: usize = 12;
    match node {
        Value::Object(map) => {
            if let Some(target) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|pointer| document.pointer(pointer))
                && depth < MAX_DEPTH
            {
                return resolve_refs(document, target, depth + 1);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve_refs(document, v, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_refs(document, v, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}
