//! Contract changes, by comparing the two JSON Schemas field by field: what a record must
//! carry (`required`), which types and enum values a field accepts. Nested objects and array
//! items are followed to a bounded depth.

use std::collections::BTreeSet;

use serde_json::Value;

use super::checks as c;
use super::side::Doc;
use super::{Collector, Group};

const MAX_DEPTH: usize = 8;

pub(super) fn compare(
    object: &str,
    old: &Value,
    new: &Value,
    doc: &Doc,
    at: &str,
    out: &mut Collector<'_>,
) {
    let at = format!("{at}/contract");
    walk(object, "", old, new, doc, &at, out, 0);
}

#[allow(clippy::too_many_arguments)]
fn walk(
    object: &str,
    path: &str,
    old: &Value,
    new: &Value,
    doc: &Doc,
    at: &str,
    out: &mut Collector<'_>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let group = || Group::Object(object.to_owned());
    let label = |field: &str| {
        if path.is_empty() {
            format!("{object}.{field}")
        } else {
            format!("{object}.{path}.{field}")
        }
    };
    let here = if path.is_empty() {
        object.to_owned()
    } else {
        format!("{object}.{path}")
    };
    // The field's own types and enum values.
    let (old_types, new_types) = (types(old), types(new));
    if old_types != new_types && !old_types.is_empty() && !new_types.is_empty() {
        let narrowed = !old_types.is_subset(&new_types);
        let (check, verb) = if narrowed {
            (&c::CONTRACT_TYPE_NARROWED, "accepts fewer types")
        } else {
            (&c::CONTRACT_TYPE_WIDENED, "accepts more types")
        };
        out.push(
            check,
            group(),
            format!("contract {here}"),
            Some(&join(&old_types)),
            Some(&join(&new_types)),
            format!("{here} {verb}"),
            Some((doc, at)),
        );
    }
    let (old_enum, new_enum) = (enum_values(old), enum_values(new));
    if let (Some(was), Some(now)) = (&old_enum, &new_enum) {
        for value in was.difference(now) {
            out.push(
                &c::CONTRACT_ENUM_VALUE_REMOVED,
                group(),
                format!("contract {here}"),
                Some(&Value::String(value.clone())),
                None,
                format!("{here} no longer accepts {value}: records carrying it are dead-lettered"),
                Some((doc, at)),
            );
        }
        for value in now.difference(was) {
            out.push(
                &c::CONTRACT_ENUM_VALUE_ADDED,
                group(),
                format!("contract {here}"),
                None,
                Some(&Value::String(value.clone())),
                format!("{here} now accepts {value}"),
                Some((doc, at)),
            );
        }
    }
    // Its members.
    let (old_required, new_required) = (required(old), required(new));
    for field in new_required.difference(&old_required) {
        out.push(
            &c::CONTRACT_REQUIRED_ADDED,
            group(),
            format!("contract {}", label(field)),
            None,
            Some(&Value::String("required".into())),
            format!(
                "{} becomes required: records without it are dead-lettered",
                label(field)
            ),
            Some((doc, at)),
        );
    }
    for field in old_required.difference(&new_required) {
        out.push(
            &c::CONTRACT_REQUIRED_REMOVED,
            group(),
            format!("contract {}", label(field)),
            Some(&Value::String("required".into())),
            None,
            format!("{} is no longer required", label(field)),
            Some((doc, at)),
        );
    }
    let (old_props, new_props) = (properties(old), properties(new));
    for (field, _) in old_props.iter() {
        if !new_props.contains_key(field) {
            out.push(
                &c::CONTRACT_PROPERTY_REMOVED,
                group(),
                format!("contract {}", label(field)),
                Some(&Value::String(field.clone())),
                None,
                format!("the contract no longer describes {}", label(field)),
                Some((doc, at)),
            );
        }
    }
    for (field, schema) in new_props.iter() {
        match old_props.get(field) {
            None => out.push(
                &c::CONTRACT_PROPERTY_ADDED,
                group(),
                format!("contract {}", label(field)),
                None,
                Some(&Value::String(field.clone())),
                format!("the contract describes {}", label(field)),
                Some((doc, at)),
            ),
            Some(was) => {
                let child = if path.is_empty() {
                    field.clone()
                } else {
                    format!("{path}.{field}")
                };
                walk(object, &child, was, schema, doc, at, out, depth + 1);
            }
        }
    }
    if let (Some(was), Some(now)) = (old.get("items"), new.get("items")) {
        let child = if path.is_empty() {
            "[]".to_owned()
        } else {
            format!("{path}[]")
        };
        walk(object, &child, was, now, doc, at, out, depth + 1);
    }
}

fn types(schema: &Value) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = match schema.get("type") {
        Some(Value::String(t)) => [t.clone()].into(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::new(),
    };
    // OpenAPI's `nullable: true` is JSON Schema's extra "null" type.
    if schema.get("nullable") == Some(&Value::Bool(true)) && !out.is_empty() {
        out.insert("null".into());
    }
    // An integer is a number: `number` -> `integer` narrows, the reverse widens.
    if out.contains("number") {
        out.insert("integer".into());
    }
    out
}

fn enum_values(schema: &Value) -> Option<BTreeSet<String>> {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .map(|values| values.iter().map(super::show).collect())
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn properties(schema: &Value) -> serde_json::Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn join(types: &BTreeSet<String>) -> Value {
    Value::String(types.iter().cloned().collect::<Vec<_>>().join(" | "))
}
