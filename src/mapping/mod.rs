//! Field mappings: a flow's `map` compiled once into templates and typed conversions, applied
//! per record. Values go into JSON through `serde_json`, so quotes, braces and backslashes in
//! data can never break the output; nothing is HTML-escaped; a missing field is an error.

mod config;
mod convert;
pub mod helpers;
mod plain;
mod scan;
pub mod syntax;
pub mod template;

use std::borrow::Cow;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::money::rates::RateTable;

pub use self::config::{ConvertSpec, MapField, MapFieldSpec, Missing, ValueType};
pub use self::syntax::{
    MAX_HANDLEBARS_TEMPLATE_BYTES, MAX_NESTING, TemplateErrorKind, TemplateInfo,
    TemplateSyntaxError, inspect,
};
pub use self::template::{CompiledTemplate, Escape, FieldPath, RenderError};

/// A compiled `map` section.
#[derive(Debug, Clone)]
pub struct Mapping {
    fields: Vec<FieldMapping>,
    /// Whether a field reads [`ROOT_FIELD`] (only an `each` item map can); items are then
    /// given the whole record under that name, which costs a copy per item.
    reads_root: bool,
}

/// The name under which an `each` item map reads the whole record:
/// `{{_root.order_id}}`, `from: /_root/order_id`.
pub const ROOT_FIELD: &str = "_root";

/// How deep `each` fields may nest (an `each` inside an `each` is depth 2). Deeper nesting is
/// refused at load: real payloads need two or three levels, and a bound keeps a typo from
/// building a runaway plan.
pub const MAX_EACH_DEPTH: usize = 4;

#[derive(Debug, Clone)]
struct FieldMapping {
    name: String,
    /// `"name":` as JSON, encoded once so [`Mapping::encode`] only copies it.
    json_key: Vec<u8>,
    value: ValueSource,
    value_type: Option<ValueType>,
    missing: Missing,
}

#[derive(Debug, Clone)]
enum ValueSource {
    Template(CompiledTemplate),
    Pointer(Pointer),
    Constant(Value),
    /// An array built item by item: `each` points at the input array, `map` maps one item.
    Each(Pointer, Box<Mapping>),
    /// An amount converted with the workspace's rate table.
    Convert(Pointer, Box<convert::Conversion>),
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
    /// A `convert:` field needs [`Mapping::compile_with_rates`].
    pub fn compile(map: &IndexMap<String, MapField>) -> Result<Self, MappingCompileError> {
        Self::compile_at(map, 1, None)
    }

    /// Compiles a flow's `map` whose `convert:` fields use the workspace's exchange rates.
    pub fn compile_with_rates(
        map: &IndexMap<String, MapField>,
        rates: Option<&Arc<RateTable>>,
    ) -> Result<Self, MappingCompileError> {
        Self::compile_at(map, 1, rates)
    }

    /// Compiles a map at `depth` levels of `each` (the flow's own map is depth 1); an error
    /// inside an `each` names the path to it (`order_lines[].quantity`).
    fn compile_at(
        map: &IndexMap<String, MapField>,
        depth: usize,
        rates: Option<&Arc<RateTable>>,
    ) -> Result<Self, MappingCompileError> {
        let mut fields = Vec::with_capacity(map.len());
        for (name, field) in map {
            let fail = |message: String| MappingCompileError {
                field: name.clone(),
                message,
            };
            let (value, value_type, missing) = match field {
                MapField::Template(source) => {
                    (compile(source).map_err(fail)?, None, Missing::Error)
                }
                MapField::Detailed(spec) => {
                    if let Some((_, message)) = spec.shape_problem() {
                        return Err(fail(message));
                    }
                    let value = compile_source(spec, depth, rates).map_err(|err| match err {
                        SourceError::Message(message) => fail(message),
                        SourceError::Inner(inner) => MappingCompileError {
                            field: format!("{name}[].{}", inner.field),
                            message: inner.message,
                        },
                    })?;
                    let missing = match spec.missing {
                        Some(missing) => missing,
                        None if spec.optional => Missing::Null,
                        None => Missing::Error,
                    };
                    (value, spec.value_type, missing)
                }
            };
            let mut json_key = serde_json::to_vec(name).map_err(|err| fail(err.to_string()))?;
            json_key.push(b':');
            fields.push(FieldMapping {
                name: name.clone(),
                json_key,
                value,
                value_type,
                missing,
            });
        }
        let reads_root = depth > 1
            && map.values().any(|field| match field {
                MapField::Template(source) => source.contains(ROOT_FIELD),
                MapField::Detailed(spec) => {
                    spec.template
                        .as_deref()
                        .is_some_and(|t| t.contains(ROOT_FIELD))
                        || spec
                            .from
                            .as_deref()
                            .is_some_and(|p| p.starts_with(&format!("/{ROOT_FIELD}")))
                }
            });
        Ok(Self { fields, reads_root })
    }

    /// Whether records pass through unchanged.
    pub fn is_identity(&self) -> bool {
        self.fields.is_empty()
    }

    /// Maps one record.
    pub fn apply(&self, record: &Value) -> Result<Value, MappingError> {
        self.apply_within(record, record)
    }

    /// Maps `record` (an array item inside an `each`, or the record itself) whose whole
    /// record is `root`.
    fn apply_within(&self, record: &Value, root: &Value) -> Result<Value, MappingError> {
        if self.fields.is_empty() {
            return Ok(record.clone());
        }
        let mut out = Map::with_capacity(self.fields.len());
        for field in &self.fields {
            if let Some(value) = field.value_of(record, root)? {
                out.insert(field.name.clone(), value.into_owned());
            }
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
        let mut first = true;
        for field in &self.fields {
            let Some(value) = field.value_of(record, record)? else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&field.json_key);
            serde_json::to_writer(&mut *out, value.as_ref())
                .map_err(|err| field.error(err.to_string()))?;
        }
        out.push(b'}');
        Ok(())
    }
}

impl FieldMapping {
    /// The field's value for one record, borrowed from the record when it is copied as is;
    /// `None` when the input is missing and the field is omitted.
    /// `root` is the whole record, for `each` item maps that read it.
    fn value_of<'r>(
        &'r self,
        record: &'r Value,
        root: &Value,
    ) -> Result<Option<Cow<'r, Value>>, MappingError> {
        let raw = match &self.value {
            ValueSource::Template(template) => match template.evaluate_borrowed(record) {
                Ok(value) => value,
                Err(RenderError::MissingField(field)) => {
                    return self.when_missing(|| format!("field `{field}` is missing"));
                }
                Err(err) => return Err(self.error(err.to_string())),
            },
            ValueSource::Pointer(pointer) => match pointer.lookup(record) {
                Some(Value::Null) | None => {
                    return self.when_missing(|| format!("field `{pointer}` is missing"));
                }
                Some(value) => Cow::Borrowed(value),
            },
            ValueSource::Constant(value) => Cow::Borrowed(value),
            ValueSource::Convert(pointer, conversion) => {
                return match pointer.lookup(record) {
                    Some(Value::Null) | None => {
                        self.when_missing(|| format!("field `{pointer}` is missing"))
                    }
                    Some(amount) => conversion
                        .apply(amount, record)
                        .map(|value| Some(Cow::Owned(value)))
                        .map_err(|message| self.error(message)),
                };
            }
            ValueSource::Each(pointer, mapping) => {
                return match pointer.lookup(record) {
                    Some(Value::Null) | None => {
                        self.when_missing(|| format!("array `{pointer}` is missing"))
                    }
                    Some(Value::Array(items)) => self.each(items, mapping, root).map(Some),
                    Some(other) => {
                        Err(self.error(format!("`{pointer}` is {}, not an array", kind_of(other))))
                    }
                };
            }
        };
        match self.value_type {
            Some(_) if raw.is_null() => Ok(Some(Cow::Owned(Value::Null))),
            Some(value_type) => convert_borrowed(raw, value_type)
                .map(Some)
                .map_err(|m| self.error(m)),
            None => Ok(Some(raw)),
        }
    }

    /// Applies the field's `missing` rule; `why` says what is missing, for the error.
    fn when_missing<'r>(
        &self,
        why: impl FnOnce() -> String,
    ) -> Result<Option<Cow<'r, Value>>, MappingError> {
        match self.missing {
            Missing::Error => Err(self.error(why())),
            Missing::Null => Ok(Some(Cow::Owned(Value::Null))),
            Missing::Omit => Ok(None),
        }
    }

    /// Maps every item of an input array; an error names the item's index
    /// (`order_lines[3].quantity`).
    fn each<'r>(
        &self,
        items: &[Value],
        mapping: &Mapping,
        root: &Value,
    ) -> Result<Cow<'r, Value>, MappingError> {
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let with_root;
            let context = match item {
                Value::Object(fields) if mapping.reads_root => {
                    let mut fields = fields.clone();
                    fields.insert(ROOT_FIELD.to_owned(), root.clone());
                    with_root = Value::Object(fields);
                    &with_root
                }
                _ => item,
            };
            let mapped = mapping
                .apply_within(context, root)
                .map_err(|inner| MappingError {
                    field: if inner.field.is_empty() {
                        format!("{}[{index}]", self.name)
                    } else {
                        format!("{}[{index}].{}", self.name, inner.field)
                    },
                    message: inner.message,
                })?;
            out.push(mapped);
        }
        Ok(Cow::Owned(Value::Array(out)))
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

/// Why a detailed field's source did not compile: its own fault, or a field of its `each` map.
enum SourceError {
    Message(String),
    Inner(MappingCompileError),
}

/// Compiles the one source a detailed field gives: `template`, `from`, `value` or `each`.
fn compile_source(
    spec: &MapFieldSpec,
    depth: usize,
    rates: Option<&Arc<RateTable>>,
) -> Result<ValueSource, SourceError> {
    let message = |text: String| SourceError::Message(text);
    let pointer = |pointer: &str, key: &str| {
        if pointer.is_empty() || pointer.starts_with('/') {
            Ok(Pointer::parse(pointer))
        } else {
            Err(message(format!(
                "`{key}: {pointer}` is not a JSON Pointer; write `/{pointer}`"
            )))
        }
    };
    match (&spec.template, &spec.from, &spec.value, &spec.each) {
        (Some(source), None, None, None) => compile(source).map_err(message),
        (None, Some(from), None, None) => {
            let from = pointer(from, "from")?;
            match &spec.convert {
                None => Ok(ValueSource::Pointer(from)),
                Some(convert) => convert::Conversion::compile(convert, rates)
                    .map(|plan| ValueSource::Convert(from, Box::new(plan)))
                    .map_err(message),
            }
        }
        (None, None, Some(value), None) => Ok(ValueSource::Constant(value.clone())),
        (None, None, None, Some(each)) => {
            let array = pointer(each, "each")?;
            let Some(map) = &spec.map else {
                return Err(message("`each` needs `map:`".into()));
            };
            if depth >= MAX_EACH_DEPTH {
                return Err(message(format!(
                    "`each` nests deeper than {MAX_EACH_DEPTH} levels; flatten the mapping"
                )));
            }
            let inner = Mapping::compile_at(map, depth + 1, rates).map_err(SourceError::Inner)?;
            Ok(ValueSource::Each(array, Box::new(inner)))
        }
        _ => Err(message(
            "give exactly one of `template`, `from`, `value` or `each`".into(),
        )),
    }
}

/// A JSON value's kind, for errors.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
            .map(|d| Value::String(d.to_string()))
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
        MapField::Detailed(Box::new(MapFieldSpec {
            template: template.map(str::to_owned),
            from: from.map(str::to_owned),
            value_type: Some(t),
            ..MapFieldSpec::default()
        }))
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
        assert_eq!(
            convert(json!("1.50"), ValueType::Decimal),
            Ok(json!("1.50"))
        );
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

    /// Parses a `map:` section as a flow file writes it.
    fn from_yaml(yaml: &str) -> Result<Mapping, MappingCompileError> {
        let map: IndexMap<String, MapField> = serde_saphyr::from_str(yaml).unwrap();
        Mapping::compile(&map)
    }

    /// `apply` and `encode` agree on every record, so the fast path cannot drift.
    fn apply_checked(mapping: &Mapping, record: &Value) -> Result<Value, MappingError> {
        let mut out = Vec::new();
        let encoded = mapping.encode(record, &mut out);
        let applied = mapping.apply(record);
        match &applied {
            Ok(value) => assert_eq!(out, serde_json::to_vec(value).unwrap()),
            Err(err) => assert_eq!(encoded.as_ref(), Err(err)),
        }
        applied
    }

    #[test]
    fn decimal_keeps_the_scale_it_came_with() {
        // Failed before: `type: decimal` normalised "59.90" to "59.9".
        let mapping = from_yaml("amount: { from: /price, type: decimal }").unwrap();
        for (price, expected) in [
            (json!("59.90"), "59.90"),
            (json!("0.00"), "0.00"),
            (json!("-3.100"), "-3.100"),
            (json!(12), "12"),
            (json!(" 7.5 "), "7.5"),
        ] {
            assert_eq!(
                apply_checked(&mapping, &json!({"price": price})).unwrap(),
                json!({"amount": expected}),
                "{price}"
            );
        }
    }

    #[test]
    fn missing_omit_leaves_the_field_out() {
        let mapping = from_yaml(
            "id: \"{{id}}\"\n\
             note: { from: /note, missing: omit }\n\
             tag: { template: \"{{upper tag}}\", missing: omit }\n\
             qty: { from: /qty, type: integer, missing: omit }\n",
        )
        .unwrap();
        assert_eq!(
            apply_checked(&mapping, &json!({"id": "a", "note": null})).unwrap(),
            json!({"id": "a"})
        );
        assert_eq!(
            apply_checked(
                &mapping,
                &json!({"id": "a", "note": "n", "tag": "x", "qty": "2"})
            )
            .unwrap(),
            json!({"id": "a", "note": "n", "tag": "X", "qty": 2})
        );
        // Only the omitted field is skipped: the first one too, without a stray comma.
        let mapping = from_yaml("a: { from: /a, missing: omit }\nb: { from: /b }\n").unwrap();
        assert_eq!(
            apply_checked(&mapping, &json!({"b": 1})).unwrap(),
            json!({"b": 1})
        );
        let mapping = from_yaml("a: { from: /a, missing: omit }").unwrap();
        assert_eq!(apply_checked(&mapping, &json!({})).unwrap(), json!({}));
    }

    #[test]
    fn missing_null_error_and_the_optional_synonym() {
        let record = json!({});
        for yaml in [
            "a: { from: /a, missing: null }",
            "a: { from: /a, optional: true }",
            "a: { template: \"x{{a}}\", missing: null }",
        ] {
            assert_eq!(
                apply_checked(&from_yaml(yaml).unwrap(), &record).unwrap(),
                json!({"a": null}),
                "{yaml}"
            );
        }
        let err = apply_checked(
            &from_yaml("a: { from: /a, missing: error }").unwrap(),
            &record,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "map.a: field `/a` is missing");
        let err = from_yaml("a: { from: /a, missing: omit, optional: true }").unwrap_err();
        assert!(err.message.contains("missing: null"), "{err}");
    }

    #[test]
    fn constants_are_written_as_given() {
        let mapping = from_yaml(
            "accepted: { value: true }\nreason: { value: null }\nmeta: { value: {a: [1, \"x\"]} }\n\
             code: { value: \"12\", type: integer }\n",
        )
        .unwrap();
        assert_eq!(
            apply_checked(&mapping, &json!({})).unwrap(),
            json!({"accepted": true, "reason": null, "meta": {"a": [1, "x"]}, "code": 12})
        );
    }

    fn acceptance_mapping() -> Mapping {
        from_yaml(
            "order_id: \"{{order_id}}\"\n\
             order_lines:\n\
             \x20 each: /order_lines\n\
             \x20 map:\n\
             \x20   id: \"{{order_line_id}}\"\n\
             \x20   accepted: { value: true }\n\
             \x20   quantity: { from: /quantity, type: integer }\n\
             \x20   reason: { from: /reason, missing: omit }\n\
             \x20   taxes:\n\
             \x20     each: /taxes\n\
             \x20     missing: omit\n\
             \x20     map:\n\
             \x20       code: \"{{code}}\"\n\
             \x20       amount: { from: /amount, type: decimal }\n",
        )
        .unwrap()
    }

    #[test]
    fn each_maps_an_array_item_by_item() {
        let record = json!({
            "order_id": "O-1",
            "order_lines": [
                {"order_line_id": "L-1", "quantity": "2", "taxes": [{"code": "VAT", "amount": "1.90"}]},
                {"order_line_id": "L-\"2\"", "quantity": 1, "reason": "x"}
            ]
        });
        assert_eq!(
            apply_checked(&acceptance_mapping(), &record).unwrap(),
            json!({
                "order_id": "O-1",
                "order_lines": [
                    {"id": "L-1", "accepted": true, "quantity": 2,
                     "taxes": [{"code": "VAT", "amount": "1.90"}]},
                    {"id": "L-\"2\"", "accepted": true, "quantity": 1, "reason": "x"}
                ]
            })
        );
        let empty = json!({"order_id": "O-2", "order_lines": []});
        assert_eq!(
            apply_checked(&acceptance_mapping(), &empty).unwrap(),
            json!({"order_id": "O-2", "order_lines": []})
        );
    }

    #[test]
    fn each_errors_name_the_item_index() {
        let record = json!({"order_id": "O-1", "order_lines": [
            {"order_line_id": "L-1", "quantity": 1},
            {"order_line_id": "L-2", "quantity": 1},
            {"order_line_id": "L-3", "quantity": 1},
            {"order_line_id": "L-4", "quantity": "many"}
        ]});
        let err = apply_checked(&acceptance_mapping(), &record).unwrap_err();
        assert_eq!(
            err.to_string(),
            "map.order_lines[3].quantity: \"many\" is not an integer"
        );
        let record = json!({"order_id": "O-1", "order_lines": [
            {"order_line_id": "L-1", "quantity": 1, "taxes": [{"code": "VAT"}]}
        ]});
        let err = apply_checked(&acceptance_mapping(), &record).unwrap_err();
        assert_eq!(err.field, "order_lines[0].taxes[0].amount");
    }

    #[test]
    fn each_follows_the_missing_rule() {
        let err = apply_checked(&acceptance_mapping(), &json!({"order_id": "O"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "map.order_lines: array `/order_lines` is missing"
        );
        let err = apply_checked(
            &acceptance_mapping(),
            &json!({"order_id": "O", "order_lines": {"a": 1}}),
        )
        .unwrap_err();
        assert!(err.message.contains("not an array"), "{err}");
        let omit =
            from_yaml("lines: { each: /lines, missing: omit, map: { id: \"{{id}}\" } }").unwrap();
        assert_eq!(
            apply_checked(&omit, &json!({"lines": null})).unwrap(),
            json!({})
        );
        let null =
            from_yaml("lines: { each: /lines, missing: null, map: { id: \"{{id}}\" } }").unwrap();
        assert_eq!(
            apply_checked(&null, &json!({})).unwrap(),
            json!({"lines": null})
        );
    }

    #[test]
    fn each_is_checked_at_compile_time() {
        let message = |yaml: &str| from_yaml(yaml).unwrap_err().to_string();
        assert!(message("a: { each: lines, map: { x: \"{{x}}\" } }").contains("/lines"));
        assert!(message("a: { each: /lines }").contains("needs `map:`"));
        assert!(message("a: { map: { x: \"{{x}}\" } }").contains("add `each"));
        assert!(message("a: { from: /a, value: 1 }").contains("exactly one"));
        assert!(message("a: { each: /l, type: string, map: { x: \"{{x}}\" } }").contains("type"));
        assert_eq!(
            message("a: { each: /l, map: { x: \"{{lower\" } }"),
            from_yaml("a: { each: /l, map: { x: \"{{lower\" } }")
                .unwrap_err()
                .to_string()
        );
        assert_eq!(
            from_yaml("a: { each: /l, map: { x: \"{{lower\" } }")
                .unwrap_err()
                .field,
            "a[].x"
        );
        // Nesting is bounded.
        let mut yaml = String::from("x: \"{{x}}\"");
        for _ in 0..MAX_EACH_DEPTH {
            yaml = format!("a: {{ each: /a, map: {{ {yaml} }} }}");
        }
        assert!(message(&yaml).contains("nests deeper"), "{yaml}");
    }

    #[test]
    fn item_maps_reach_the_whole_record_as_root() {
        let mapping = from_yaml(
            "lines:\n\
             \x20 each: /lines\n\
             \x20 map:\n\
             \x20   ref: \"{{_root.order_id}}-{{id}}\"\n\
             \x20   currency: { from: /_root/currency }\n\
             \x20   parts:\n\
             \x20     each: /parts\n\
             \x20     map:\n\
             \x20       order: { from: /_root/order_id }\n\
             \x20       sku: \"{{sku}}\"\n",
        )
        .unwrap();
        let record = json!({"order_id": "O-7", "currency": "EUR", "lines": [
            {"id": "L-1", "parts": [{"sku": "a"}, {"sku": "b"}]}
        ]});
        assert_eq!(
            apply_checked(&mapping, &record).unwrap(),
            json!({"lines": [{"ref": "O-7-L-1", "currency": "EUR", "parts": [
                {"order": "O-7", "sku": "a"}, {"order": "O-7", "sku": "b"}]}]})
        );
    }
}
