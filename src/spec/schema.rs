//! The published JSON Schemas of the spec files, generated from the raw types so the editor
//! schema can never drift from what the loader accepts.

use schemars::JsonSchema;
use serde_json::Value;

use super::raw::{FlowFile, TestFile, WorkspaceFile};

/// `(file name, schema)` for `workspace.schema.json`, `flow.schema.json` and
/// `tests.schema.json`.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("workspace.schema.json", schema_of::<WorkspaceFile>()),
        ("flow.schema.json", schema_of::<FlowFile>()),
        ("tests.schema.json", schema_of::<TestFile>()),
    ]
}

/// A schema rendered as written to disk: pretty-printed with a trailing newline.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

fn schema_of<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}
