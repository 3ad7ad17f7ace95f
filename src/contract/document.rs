//! Contracts that point into a larger document: `specs/orders.json#/components/schemas/Order`
//! (OpenAPI 3) or `specs/orders.json#/definitions/Order` (Swagger 2). The schema the pointer
//! selects becomes the contract's root, and the document's schema collections
//! (`components`, `definitions`) travel with it, so the `$ref`s inside it
//! (`#/components/schemas/Line`) resolve locally, exactly as they did in the document.
//!
//! OpenAPI 3.0 marks optional nulls with `nullable: true` (and Swagger 2 vendors with
//! `x-nullable: true`), which JSON Schema does not know: such a schema's `type` (and `enum`)
//! are widened to admit `null`, so a payload the document allows is never refused.

use serde_json::{Map, Value};

/// A contract reference split into its file and the JSON Pointer after `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractRef<'a> {
    /// The file, relative to the workspace folder.
    pub file: &'a str,
    /// The JSON Pointer into the file (`/components/schemas/Order`), if one is given.
    pub pointer: Option<&'a str>,
}

/// Why a pointer selects no schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectError {
    /// What is wrong.
    pub message: String,
    /// The pointer token that was not found (empty when the pointer itself is malformed).
    pub token: String,
    /// The names found where the pointer went wrong, for a "did you mean".
    pub candidates: Vec<String>,
}

impl<'a> ContractRef<'a> {
    /// Splits `file#/pointer`; a contract without `#` is the whole file.
    pub fn parse(contract: &'a str) -> Self {
        match contract.split_once('#') {
            Some((file, pointer)) => Self {
                file,
                pointer: Some(pointer),
            },
            None => Self {
                file: contract,
                pointer: None,
            },
        }
    }
}

/// The top-level members of a document that hold schemas `$ref`s point at.
const SCHEMA_COLLECTIONS: [&str; 3] = ["components", "definitions", "$defs"];

/// The schema at `pointer` in `document`, with the document's schema collections attached so
/// its local `$ref`s resolve.
pub fn select(document: &Value, pointer: &str) -> Result<Value, SelectError> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(SelectError {
            message: format!("`#{pointer}` is not a JSON Pointer; write `#/{pointer}`"),
            token: String::new(),
            candidates: Vec::new(),
        });
    }
    let mut node = document;
    let mut walked = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match node {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        let Some(next) = next else {
            let candidates = node
                .as_object()
                .map(|map| map.keys().cloned().collect())
                .unwrap_or_default();
            let at = if walked.is_empty() {
                "the document root"
            } else {
                &walked
            };
            return Err(SelectError {
                message: format!("`#{pointer}` leads nowhere: {at} has no `{token}`"),
                token,
                candidates,
            });
        };
        walked.push('/');
        walked.push_str(&token);
        node = next;
    }
    let Value::Object(schema) = node else {
        return Err(SelectError {
            message: format!("`#{pointer}` is not a schema (an object) but {node}"),
            token: String::new(),
            candidates: Vec::new(),
        });
    };
    let mut root: Map<String, Value> = schema.clone();
    for collection in SCHEMA_COLLECTIONS {
        if let Some(value) = document.get(collection)
            && !root.contains_key(collection)
        {
            root.insert(collection.to_owned(), value.clone());
        }
    }
    let mut root = Value::Object(root);
    admit_declared_nulls(&mut root);
    Ok(root)
}

/// Widens every schema marked `nullable: true` or `x-nullable: true` to admit `null`.
fn admit_declared_nulls(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let nullable = ["nullable", "x-nullable"]
                .iter()
                .any(|key| map.get(*key) == Some(&Value::Bool(true)));
            if nullable {
                match map.get_mut("type") {
                    Some(Value::String(kind)) if kind != "null" => {
                        let kind = std::mem::take(kind);
                        map.insert("type".into(), serde_json::json!([kind, "null"]));
                    }
                    Some(Value::Array(kinds)) if !kinds.contains(&Value::from("null")) => {
                        kinds.push(Value::from("null"));
                    }
                    _ => {}
                }
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            map.values_mut().for_each(admit_declared_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(admit_declared_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn openapi() -> Value {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "Orders", "version": "1"},
            "paths": {},
            "components": {"schemas": {
                "Order": {
                    "type": "object",
                    "required": ["order_id", "order_lines"],
                    "properties": {
                        "order_id": {"type": "string"},
                        "order_lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}}
                    }
                },
                "Line": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
            }}
        })
    }

    #[test]
    fn splits_file_and_pointer() {
        assert_eq!(
            ContractRef::parse("specs/o.json#/definitions/Order"),
            ContractRef {
                file: "specs/o.json",
                pointer: Some("/definitions/Order")
            }
        );
        assert_eq!(ContractRef::parse("contracts/o.json").pointer, None);
    }

    #[test]
    fn selected_schemas_resolve_their_refs() {
        let schema = select(&openapi(), "/components/schemas/Order").unwrap();
        assert!(schema.get("properties").is_some());
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json!({"order_id": "1", "order_lines": [{"id": "a"}]})));
        assert!(!validator.is_valid(&json!({"order_id": "1", "order_lines": [{"id": 3}]})));
    }

    #[test]
    fn swagger_definitions_resolve_too() {
        let doc = json!({"swagger": "2.0", "definitions": {
            "Order": {"type": "object", "properties": {"line": {"$ref": "#/definitions/Line"}}},
            "Line": {"type": "object", "required": ["id"]}
        }});
        let schema = select(&doc, "/definitions/Order").unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(!validator.is_valid(&json!({"line": {}})));
        assert!(validator.is_valid(&json!({"line": {"id": 1}})));
    }

    #[test]
    fn bad_pointers_say_where_they_went_wrong() {
        let err = select(&openapi(), "/components/schemas/Ordr").unwrap_err();
        assert_eq!(
            err.message,
            "`#/components/schemas/Ordr` leads nowhere: /components/schemas has no `Ordr`"
        );
        assert!(err.candidates.contains(&"Order".to_owned()));
        assert!(select(&openapi(), "components").is_err());
        assert!(select(&openapi(), "/openapi").is_err());
    }

    #[test]
    fn unresolvable_refs_fail_to_compile() {
        let doc = json!({"components": {"schemas": {
            "Order": {"properties": {"x": {"$ref": "#/components/schemas/Missing"}}}
        }}});
        let schema = select(&doc, "/components/schemas/Order").unwrap();
        assert!(jsonschema::validator_for(&schema).is_err());
    }

    #[test]
    fn declared_nullable_fields_admit_null() {
        let doc = json!({"openapi": "3.0.3", "components": {"schemas": {"Order": {
            "type": "object",
            "properties": {
                "note": {"type": "string", "nullable": true},
                "state": {"type": "string", "enum": ["A", "B"], "nullable": true},
                "tracking": {"type": "string"},
                "legacy": {"type": ["string", "integer"], "x-nullable": true}
            }
        }}}});
        let schema = select(&doc, "/components/schemas/Order").unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json!({"note": null, "state": null, "legacy": null})));
        assert!(!validator.is_valid(&json!({"state": "C"})));
        // Undeclared nulls are still refused (a lenient contract counts them instead).
        assert!(!validator.is_valid(&json!({"tracking": null})));
    }
}
