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

/// Which connector-agnostic section a schema is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A system: `description`, `acts_for` and one key per connector.
    System,
    /// A flow's `from:`: `system`, `author` and the source connectors' keys.
    From,
    /// A flow's `to:`: `system`, `capture` and the sink connectors' keys.
    To,
    /// A flow's `acknowledge:`: `system`, `map` or `body`, and the sink connectors' keys.
    Acknowledge,
}

/// The schema of a section whose keys depend on the connector: its generic keys, then what
/// each connector of the registry accepts there. A system gets one optional property per
/// connector; `from:`/`to:` get the union of the connectors' keys, so an editor completes
/// every key and still flags one no connector knows (validation then checks the keys against
/// the system's own connector).
pub(crate) fn section_schema(
    generator: &mut schemars::SchemaGenerator,
    role: Role,
) -> schemars::Schema {
    use super::model::Party;
    use super::raw::CaptureConfig;

    let mut properties = serde_json::Map::new();
    let mut generic = |generator: &mut schemars::SchemaGenerator,
                       name: &str,
                       schema: schemars::Schema,
                       description: &str| {
        properties.insert(
            name.to_owned(),
            describe(schema, generator, Some(description)),
        );
    };
    let required: &[&str] = match role {
        Role::System => {
            let schema = generator.subschema_for::<Option<String>>();
            generic(
                generator,
                "description",
                schema,
                "What this system is, in a few words (for example \"Mirakl operator back office\").",
            );
            let schema = generator.subschema_for::<Option<Party>>();
            generic(
                generator,
                "acts_for",
                schema,
                "The party this system acts for: `seller` or `operator`. Used by per-field ownership.",
            );
            &[]
        }
        Role::From => {
            let schema = generator.subschema_for::<String>();
            generic(
                generator,
                "system",
                schema,
                "The system records are read from; declared under `systems`.",
            );
            let schema = generator.subschema_for::<Option<String>>();
            generic(
                generator,
                "author",
                schema,
                "JSON Pointer to a record field naming the system that authored the change (for \
                 example `/last_updated_by`). That system must be allowed to create or update \
                 the object. Defaults to the source system itself.",
            );
            &["system"]
        }
        Role::To => {
            let schema = generator.subschema_for::<String>();
            generic(
                generator,
                "system",
                schema,
                "The system records are written to; declared under `systems`.",
            );
            let schema = generator.subschema_for::<Option<CaptureConfig>>();
            generic(
                generator,
                "capture",
                schema,
                "Remember the sink's ID for the record from its answer, for later lookups \
                 (per-record sinks).",
            );
            &["system"]
        }
        Role::Acknowledge => {
            let schema = generator.subschema_for::<String>();
            generic(
                generator,
                "system",
                schema,
                "The system acknowledged; usually the flow's source system.",
            );
            let schema = generator.subschema_for::<Option<Value>>();
            generic(
                generator,
                "body",
                schema,
                "JSON body sent as it is (for example `{accepted: true}`).",
            );
            let schema = generator
                .subschema_for::<Option<indexmap::IndexMap<String, crate::mapping::MapField>>>();
            generic(
                generator,
                "map",
                schema,
                "The body as a mapping over the record as read (with its lookups, and `_leg` \
                 for a leg of a split record), like a flow's `map:`. Give `map` or `body`.",
            );
            &["system"]
        }
    };
    for connector in crate::connectors::registry() {
        let [system, from, to] = connector.schemas();
        let roles = connector.roles();
        match role {
            Role::System => {
                let schema = system(generator);
                properties
                    .entry(connector.name())
                    .or_insert_with(|| describe(schema, generator, None));
            }
            Role::From if roles.source => merge(
                connector.name(),
                from(generator),
                generator,
                &mut properties,
            ),
            Role::To | Role::Acknowledge if roles.sink => {
                merge(connector.name(), to(generator), generator, &mut properties)
            }
            _ => {}
        }
    }
    let description = match role {
        Role::System => {
            "A participating system and the connector that reaches it: exactly one connector key."
        }
        Role::From => {
            "Where a flow's records come from: `system`, `author` and the keys of the system's connector."
        }
        Role::To => {
            "Where a flow's records go: `system`, `capture` and the keys of the system's connector."
        }
        Role::Acknowledge => {
            "A request acknowledging a record at its source: `system`, `map` or `body`, and the keys of the system's connector."
        }
    };
    schemars::json_schema!({
        "description": description,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The definition a `$ref` schema points to, if it is one of the generator's.
fn definition_name(schema: &schemars::Schema) -> Option<String> {
    let reference = schema.get("$ref")?.as_str()?;
    Some(reference.rsplit('/').next()?.to_owned())
}

/// `schema` with a description on the property itself (editors show it), taken from
/// `description` or else from the definition it refers to.
fn describe(
    schema: schemars::Schema,
    generator: &schemars::SchemaGenerator,
    description: Option<&str>,
) -> Value {
    let mut value = schema.to_value();
    // `true` (any value) has nowhere to put a description; `{}` says the same and has.
    if value == Value::Bool(true) {
        value = Value::Object(serde_json::Map::new());
    }
    let description = description.map(str::to_owned).or_else(|| {
        let name = definition_name(&schemars::Schema::try_from(value.clone()).ok()?)?;
        generator
            .definitions()
            .get(&name)?
            .get("description")?
            .as_str()
            .map(str::to_owned)
    });
    if let (Some(object), Some(description)) = (value.as_object_mut(), description) {
        object.insert("description".to_owned(), Value::String(description));
    }
    value
}

/// Adds a connector's `from:`/`to:` keys to `properties` (the first connector naming a key
/// wins), each description saying which connector it is for, and drops the now inlined
/// definition.
fn merge(
    connector: &str,
    schema: schemars::Schema,
    generator: &mut schemars::SchemaGenerator,
    properties: &mut serde_json::Map<String, Value>,
) {
    let name = definition_name(&schema);
    let definition = match &name {
        Some(name) => generator.definitions_mut().remove(name),
        None => Some(schema.to_value()),
    };
    let Some(Value::Object(fields)) = definition.as_ref().and_then(|d| d.get("properties")) else {
        return;
    };
    for (key, property) in fields {
        let mut property = property.clone();
        if let Some(Value::String(description)) = property.get_mut("description") {
            *description = format!("`{connector}`: {description}");
        }
        properties.entry(key.clone()).or_insert(property);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_keys_come_from_the_registry() {
        let workspace = schema_of::<super::super::raw::WorkspaceFile>();
        let system = &workspace["$defs"]["SystemConfig"]["properties"];
        for connector in crate::connectors::registry() {
            assert!(system.get(connector.name()).is_some(), "{system:#}");
        }
        let flow = schema_of::<FlowFile>();
        let from = &flow["$defs"]["SourceConfig"];
        // The union of the source connectors' keys, each saying whose it is, and no other.
        assert_eq!(from["additionalProperties"], Value::Bool(false));
        for key in [
            "system", "author", "request", "records", "cursor", "path", "format",
        ] {
            assert!(from["properties"].get(key).is_some(), "{key}: {from:#}");
        }
        assert!(
            from["properties"]["records"]["description"]
                .as_str()
                .is_some_and(|text| text.starts_with("`http`: ")),
            "{from:#}"
        );
        let to = &flow["$defs"]["SinkConfig"]["properties"];
        for key in ["system", "capture", "request", "idempotency_header", "path"] {
            assert!(to.get(key).is_some(), "{key}: {to:#}");
        }
    }
}
