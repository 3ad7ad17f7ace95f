//! `switchyard schema`: the checked-in schemas are current and fully documented.

use std::path::Path;

use serde_json::Value;

use crate::util::switchyard;

#[test]
fn checked_in_schemas_are_current() {
    let out = std::env::temp_dir().join(format!("switchyard-schemas-{}", std::process::id()));
    let output = switchyard(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["schema", "--out", &out.display().to_string()],
    );
    assert_eq!(output.code, 0, "{output:?}");
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, _) in switchyard::spec::schema::schemas() {
        let written = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        let committed = std::fs::read_to_string(checked_in.join(name)).unwrap_or_default();
        assert!(
            written == committed,
            "schemas/{name} is stale: run `cargo run -- schema --out schemas`"
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn every_property_has_a_description() {
    let mut missing = Vec::new();
    for (name, schema) in switchyard::spec::schema::schemas() {
        walk(&schema, name, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "properties without a description:\n{}",
        missing.join("\n")
    );
}

fn walk(schema: &Value, at: &str, missing: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let path = format!("{at}/properties/{name}");
            let described = property
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|text| !text.trim().is_empty());
            if !described {
                missing.push(path.clone());
            }
            walk(property, &path, missing);
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(defs) = object.get(key).and_then(Value::as_object) {
            for (name, def) in defs {
                walk(def, &format!("{at}/{key}/{name}"), missing);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get(key) {
            walk(inner, &format!("{at}/{key}"), missing);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = object.get(key).and_then(Value::as_array) {
            for (index, inner) in list.iter().enumerate() {
                walk(inner, &format!("{at}/{key}/{index}"), missing);
            }
        }
    }
}
