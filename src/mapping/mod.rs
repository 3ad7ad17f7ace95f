//! Field mappings: a flow's `map` compiled once into templates and typed conversions, applied
//! per record. Values go into JSON through `serde_json`, so quotes, braces and backslashes in
//! data can never break the output; nothing is HTML-escaped; a missing field is an error.

pub mod helpers;
pub mod syntax;
pub mod template;

use indexmap::IndexMap;
use serde_json::{Map, Value};

pub use self::syntax::{TemplateInfo, TemplateSyntaxError, inspect};
pub use self::template::{CompiledTemplate, Escape, FieldPath, RenderError};
use crate::spec::raw::{MapField, ValueType};

/// A compiled `map` section.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<FieldMapping>,
}

#[derive(Debug, Clone)]
struct FieldMapping {
    name: String,
    value: ValueSource,
    value_type: Option<ValueType>,
    optional: bool,
}

#[derive(Debug, Clone)]
enum ValueSource {
    Template(CompiledTemplate),
    Pointer(String),
}

/// A mapping could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map.{field}: {message}")]
pub struct MappingCompileError {
    /// The output field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("map.{field}: {message}")]
pub struct MappingError {
    /// The output field that failed.
    pub field: String,
    /// Why.
    pub message: String,
}

impl Mapping {
    /// Compiles a flow's `map`. An empty map passes records through unchanged.
    pub fn compile(map: &IndexMap<String, MapField>) -> Result<Self, MappingCompileError> {
        let mut fields = Vec::with_capacity(map.len());
        for (name, field) in map {
            let fail = |message: String| MappingCompileError {
                field: name.clone(),
                message,
            };
            let (value, value_type, optional) = match field {
                MapField::Template(source) => (compile(source).map_err(fail)?, None, false),
                MapField::Detailed(spec) => {
                    let value = match (&spec.template, &spec.from) {
                        (Some(source), None) => compile(source).map_err(fail)?,
                        (None, Some(pointer)) if pointer.is_empty() || pointer.starts_with('/') => {
                            ValueSource::Pointer(pointer.clone())
                        }
                        (None, Some(pointer)) => {
                            return Err(fail(format!(
                                "`from: {pointer}` is not a JSON Pointer; write `/{pointer}`"
                            )));
                        }
                        _ => return Err(fail("give exactly one of `template` or `from`".into())),
                    };
                    (value, spec.value_type, spec.optional)
                }
            };
            fields.push(FieldMapping {
                name: name.clone(),
                value,
                value_type,
                optional,
            });
        }
        Ok(Self { fields })
    }

    /// Whether records pass through unchanged.
    pub fn is_identity(&self) -> bool {
        self.fields.is_empty()
    }

    /// Maps one record.
    pub fn apply(&self, record: &Value) -> Result<Value, MappingError> {
        if self.fields.is_empty() {
            return Ok(record.clone());
        }
        let mut out = Map::with_capacity(self.fields.len());
        for field in &self.fields {
            let fail = |message: String| MappingError {
                field: field.name.clone(),
                message,
            };
            let raw = match &field.value {
                ValueSource::Template(template) => match template.evaluate(record) {
                    Ok(value) => value,
                    Err(RenderError::MissingField(_)) if field.optional => Value::Null,
                    Err(err) => return Err(fail(err.to_string())),
                },
                ValueSource::Pointer(pointer) => match record.pointer(pointer) {
                    Some(Value::Null) | None if field.optional => Value::Null,
                    Some(Value::Null) | None => {
                        return Err(fail(format!("field `{pointer}` is missing")));
                    }
                    Some(value) => value.clone(),
                },
            };
            let value = match field.value_type {
                Some(_) if raw.is_null() => Value::Null,
                Some(value_type) => convert(raw, value_type).map_err(fail)?,
                None => raw,
            };
            out.insert(field.name.clone(), value);
        }
        Ok(Value::Object(out))
    }
}

fn compile(source: &str) -> Result<ValueSource, String> {
    CompiledTemplate::compile(source)
        .map(ValueSource::Template)
        .map_err(|err| format!("template does not compile: {err}"))
}

/// Converts a value to a declared type; text is parsed, and a value that does not fit is an
/// error naming the value.
pub fn convert(value: Value, value_type: ValueType) -> Result<Value, String> {
    let describe = |v: &Value| {
        let text = v.to_string();
        if text.len() > 60 {
            format!("{}...", &text[..text.floor_char_boundary(57)])
        } else {
            text
        }
    };
    match value_type {
        ValueType::String => Ok(Value::String(helpers::render(&value))),
        ValueType::Integer => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(format!("{} is not an integer", describe(&value))),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{} is not an integer", describe(&value))),
            _ => Err(format!("{} is not an integer", describe(&value))),
        },
        ValueType::Number => match &value {
            Value::Number(_) => Ok(value),
            Value::String(s) => serde_json::from_str::<serde_json::Number>(s.trim())
                .map(Value::Number)
                .map_err(|_| format!("{} is not a number", describe(&value))),
            _ => Err(format!("{} is not a number", describe(&value))),
        },
        ValueType::Decimal => helpers::parse_decimal(&value)
            .map(|d| Value::String(d.normalize().to_string()))
            .map_err(|_| format!("{} is not a decimal amount", describe(&value))),
        ValueType::Boolean => match &value {
            Value::Bool(_) => Ok(value),
            Value::String(s) if s == "true" => Ok(Value::Bool(true)),
            Value::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{} is not a boolean", describe(&value))),
        },
        ValueType::Json => match value {
            Value::String(s) => {
                serde_json::from_str(&s).map_err(|err| format!("rendered text is not JSON ({err})"))
            }
            other => Ok(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::raw::MapFieldSpec;

    fn detailed(template: Option<&str>, from: Option<&str>, t: ValueType) -> MapField {
        MapField::Detailed(MapFieldSpec {
            template: template.map(str::to_owned),
            from: from.map(str::to_owned),
            value_type: Some(t),
            optional: false,
        })
    }

    fn storefront_mapping() -> Mapping {
        let mut map = IndexMap::new();
        map.insert(
            "sku".into(),
            MapField::Template("{{lower shop_sku}}".into()),
        );
        map.insert("title".into(), MapField::Template("{{trim title}}".into()));
        map.insert(
            "price_minor".into(),
            detailed(Some("{{minor_units price}}"), None, ValueType::Integer),
        );
        map.insert(
            "stock".into(),
            detailed(None, Some("/quantity"), ValueType::Integer),
        );
        map.insert(
            "active".into(),
            detailed(
                Some("{{and (gt quantity 0) (eq state_code \"11\")}}"),
                None,
                ValueType::Boolean,
            ),
        );
        map.insert(
            "label".into(),
            MapField::Template("{{title}} ({{shop_sku}})".into()),
        );
        Mapping::compile(&map).unwrap()
    }

    #[test]
    fn maps_an_offer_with_types() {
        let record = json!({
            "shop_sku": "SKU-AB", "title": " Café \"Pro\" {x} ", "price": "19.9",
            "quantity": 4, "state_code": "11"
        });
        let out = storefront_mapping().apply(&record).unwrap();
        assert_eq!(
            out,
            json!({"sku": "sku-ab", "title": "Café \"Pro\" {x}", "price_minor": 1990, "stock": 4,
                   "active": true, "label": " Café \"Pro\" {x}  (SKU-AB)"})
        );
        // The output stays valid JSON whatever the data holds.
        let text = serde_json::to_string(&out).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), out);
    }

    #[test]
    fn failures_name_the_field() {
        let record = json!({"shop_sku": "A", "title": "t", "price": "abc", "quantity": 1,
                            "state_code": "11"});
        let err = storefront_mapping().apply(&record).unwrap_err();
        assert_eq!(err.field, "price_minor");
        let record = json!({"shop_sku": "A", "title": "t", "price": "1", "state_code": "11"});
        let err = storefront_mapping().apply(&record).unwrap_err();
        assert_eq!(err.field, "stock");
    }

    #[test]
    fn conversions() {
        assert_eq!(convert(json!("12"), ValueType::Integer), Ok(json!(12)));
        assert!(convert(json!("12.5"), ValueType::Integer).is_err());
        assert_eq!(convert(json!(12.0), ValueType::Integer), Ok(json!(12)));
        assert_eq!(convert(json!("1.50"), ValueType::Decimal), Ok(json!("1.5")));
        assert_eq!(convert(json!(3), ValueType::String), Ok(json!("3")));
        assert_eq!(
            convert(json!("{\"a\":1}"), ValueType::Json),
            Ok(json!({"a": 1}))
        );
        assert!(convert(json!("yes"), ValueType::Boolean).is_err());
    }

    #[test]
    fn compile_errors_name_the_field() {
        let mut map = IndexMap::new();
        map.insert("sku".into(), MapField::Template("{{lower shop_sku".into()));
        assert_eq!(Mapping::compile(&map).unwrap_err().field, "sku");
        let mut map = IndexMap::new();
        map.insert(
            "stock".into(),
            detailed(None, Some("quantity"), ValueType::Integer),
        );
        assert!(
            Mapping::compile(&map)
                .unwrap_err()
                .message
                .contains("/quantity")
        );
    }
}
