//! Field mappings: a flow's `map` compiled once into templates and typed conversions, applied
//! per record. Values go into JSON through `serde_json`, so quotes, braces and backslashes in
//! data can never break the output; nothing is HTML-escaped; a missing field is an error.

mod config;
pub mod helpers;
mod plain;
mod scan;
pub mod syntax;
pub mod template;

use std::borrow::Cow;

use indexmap::IndexMap;
use serde_json::{Map, Value};

pub use self::config::{MapField, MapFieldSpec, ValueType};
pub use self::syntax::{
    MAX_HANDLEBARS_TEMPLATE_BYTES, MAX_NESTING, TemplateErrorKind, TemplateInfo,
    TemplateSyntaxError, inspect,
};
pub use self::template::{CompiledTemplate, Escape, FieldPath, RenderError};

/// A compiled `map` section.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<FieldMapping>,
}

#[derive(Debug, Clone)]
struct FieldMapping {
    name: String,
    /// `"name":` as JSON, encoded once so [`Mapping::encode`] only copies it.
    json_key: Vec<u8>,
    value: ValueSource,
    value_type: Option<ValueType>,
    optional: bool,
}

#[derive(Debug, Clone)]
enum ValueSource {
    Template(CompiledTemplate),
    Pointer(Pointer),
}

/// A JSON Pointer split into unescaped tokens once, at compile time; looks up what
/// `Value::pointer` would, without re-parsing the pointer for every record.
#[derive(Debug, Clone)]
struct Pointer {
    source: String,
    tokens: Vec<String>,
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
                            ValueSource::Pointer(Pointer::parse(pointer))
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
            let mut json_key = serde_json::to_vec(name).map_err(|err| fail(err.to_string()))?;
            json_key.push(b':');
            fields.push(FieldMapping {
                name: name.clone(),
                json_key,
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
            out.insert(field.name.clone(), field.value_of(record)?.into_owned());
        }
        Ok(Value::Object(out))
    }

    /// Maps one record straight to compact JSON appended to `out`: the same bytes as
    /// serialising what [`Mapping::apply`] returns, without building the output tree or
    /// cloning the values it copies. On error `out` is left as it was.
    pub fn encode(&self, record: &Value, out: &mut Vec<u8>) -> Result<(), MappingError> {
        let start = out.len();
        let result = self.encode_into(record, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_into(&self, record: &Value, out: &mut Vec<u8>) -> Result<(), MappingError> {
        if self.fields.is_empty() {
            return serde_json::to_writer(&mut *out, record).map_err(|err| MappingError {
                field: String::new(),
                message: err.to_string(),
            });
        }
        out.push(b'{');
        for (index, field) in self.fields.iter().enumerate() {
            let value = field.value_of(record)?;
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&field.json_key);
            serde_json::to_writer(&mut *out, value.as_ref())
                .map_err(|err| field.error(err.to_string()))?;
        }
        out.push(b'}');
        Ok(())
    }
}

impl FieldMapping {
    /// The field's value for one record, borrowed from the record when it is copied as is.
    fn value_of<'r>(&'r self, record: &'r Value) -> Result<Cow<'r, Value>, MappingError> {
        let raw = match &self.value {
            ValueSource::Template(template) => match template.evaluate_borrowed(record) {
                Ok(value) => value,
                Err(RenderError::MissingField(_)) if self.optional => Cow::Owned(Value::Null),
                Err(err) => return Err(self.error(err.to_string())),
            },
            ValueSource::Pointer(pointer) => match pointer.lookup(record) {
                Some(Value::Null) | None if self.optional => Cow::Owned(Value::Null),
                Some(Value::Null) | None => {
                    return Err(self.error(format!("field `{pointer}` is missing")));
                }
                Some(value) => Cow::Borrowed(value),
            },
        };
        match self.value_type {
            Some(_) if raw.is_null() => Ok(Cow::Owned(Value::Null)),
            Some(value_type) => convert_borrowed(raw, value_type).map_err(|m| self.error(m)),
            None => Ok(raw),
        }
    }

    fn error(&self, message: String) -> MappingError {
        MappingError {
            field: self.name.clone(),
            message,
        }
    }
}

impl Pointer {
    /// Splits a pointer that is empty or starts with `/` (checked by the caller).
    fn parse(source: &str) -> Self {
        let tokens = source
            .split('/')
            .skip(1)
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        Self {
            source: source.to_owned(),
            tokens,
        }
    }

    fn lookup<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.tokens
            .iter()
            .try_fold(value, |target, token| match target {
                Value::Object(map) => map.get(token),
                Value::Array(items) => array_index(token).and_then(|i| items.get(i)),
                _ => None,
            })
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// An array index as `Value::pointer` reads one: no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

fn compile(source: &str) -> Result<ValueSource, String> {
    CompiledTemplate::compile(source)
        .map(ValueSource::Template)
        .map_err(|err| format!("template does not compile: {err}"))
}

/// [`convert`] for a value that may be borrowed: one that already has the type is kept as it
/// is (borrowed values stay borrowed); anything else goes through [`convert`].
fn convert_borrowed(
    value: Cow<'_, Value>,
    value_type: ValueType,
) -> Result<Cow<'_, Value>, String> {
    let keeps = match (value_type, value.as_ref()) {
        (ValueType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (ValueType::Number, Value::Number(_))
        | (ValueType::Boolean, Value::Bool(_))
        | (ValueType::String, Value::String(_)) => true,
        (ValueType::Json, other) => !other.is_string(),
        _ => false,
    };
    if keeps {
        Ok(value)
    } else {
        convert(value.into_owned(), value_type).map(Cow::Owned)
    }
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
    fn encode_writes_the_bytes_apply_serialises_to() {
        let records = [
            json!({"shop_sku": "SKU-AB", "title": " Café \"Pro\" {x}\n ", "price": "19.9",
                   "quantity": 4, "state_code": "11"}),
            json!({"shop_sku": 7, "title": "t", "price": 3, "quantity": "5", "state_code": 11}),
            json!({"shop_sku": "A", "title": "t", "price": "abc", "quantity": 1}),
        ];
        let identity = Mapping::compile(&IndexMap::new()).unwrap();
        for mapping in [storefront_mapping(), identity] {
            for record in &records {
                let mut out = b"prefix".to_vec();
                match mapping.apply(record) {
                    Ok(value) => {
                        mapping.encode(record, &mut out).unwrap();
                        assert_eq!(&out[6..], serde_json::to_vec(&value).unwrap());
                    }
                    Err(err) => {
                        assert_eq!(mapping.encode(record, &mut out), Err(err));
                        assert_eq!(out, b"prefix", "a failed record leaves nothing behind");
                    }
                }
            }
        }
    }

    #[test]
    fn pointers_find_what_value_pointer_finds() {
        let record = json!({"a": {"b/c": [1, {"~x": 2}]}, "": 3, "n": null});
        for pointer in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/1/~0x",
            "/a/b~1c/01",
            "/a/b~1c/+1",
            "/",
            "/n",
            "/no/x",
        ] {
            assert_eq!(
                Pointer::parse(pointer).lookup(&record),
                record.pointer(pointer),
                "{pointer}"
            );
        }
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
