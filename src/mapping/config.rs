//! The `map` section as written in a flow file. The mapping owns these types (the spec's raw
//! phase embeds them) so that `mapping` never reaches back into `spec`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One output field of a mapping.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MapField {
    /// A Handlebars template. A template that is exactly one path (`{{price}}`) copies the
    /// value with its JSON type; any other template renders a string.
    Template(String),
    /// A template, a source path, a constant or an array mapping, with the type of the
    /// output value and what to do when the input is missing.
    Detailed(MapFieldSpec),
}

/// An output field with an explicit source, type or missing-value rule. Give exactly one of
/// `template`, `from`, `value` or `each`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapFieldSpec {
    /// A Handlebars template rendering the value.
    #[serde(default)]
    pub template: Option<String>,
    /// JSON Pointer into the input record whose value is copied (for example `/quantity`).
    #[serde(default)]
    pub from: Option<String>,
    /// A constant JSON value written as it is (for example `value: true`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Value>,
    /// JSON Pointer to an array in the input record (for example `/order_lines`): the output
    /// is an array with one object per item, built by `map` over that item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<String>,
    /// The per-item mapping of an `each` field; its templates and pointers read the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<IndexMap<String, MapField>>,
    /// Type of the output value; the rendered text is converted and must fit.
    #[serde(default, rename = "type")]
    pub value_type: Option<ValueType>,
    /// What a missing (absent or `null`) input value gives: `error` (the default), `null`,
    /// or `omit` (the field is left out of the output).
    #[serde(
        default,
        deserialize_with = "missing_rule",
        skip_serializing_if = "Option::is_none"
    )]
    pub missing: Option<Missing>,
    /// Synonym of `missing: null`, kept for existing flows.
    #[serde(default)]
    pub optional: bool,
}

/// What a mapped field gives when its input value is absent or `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// The record fails mapping (a dead letter naming the field).
    Error,
    /// The field is written as `null`.
    Null,
    /// The field is left out of the output object (APIs that refuse explicit nulls).
    Omit,
}

/// `value: null` is a constant `null`, not an absent key.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// `missing: null` is the rule `null` (YAML reads the bare word as a null value).
fn missing_rule<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Missing>, D::Error> {
    match Option::<Missing>::deserialize(deserializer)? {
        None => Ok(Some(Missing::Null)),
        rule => Ok(rule),
    }
}

/// Type of a mapped value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A JSON string.
    String,
    /// A JSON integer (64-bit).
    Integer,
    /// A JSON number.
    Number,
    /// A decimal amount, kept exact as a JSON string with the scale it came with
    /// (`"59.90"` stays `"59.90"`).
    Decimal,
    /// `true` or `false`.
    Boolean,
    /// Any JSON value, parsed from the rendered text.
    Json,
}
