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
    Detailed(Box<MapFieldSpec>),
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
    /// Converts the amount `from` points at into another currency with the workspace's
    /// `exchange_rates` (rounded half to even to the target's minor units). The output is an
    /// object recording where the number came from: `amount`, `currency`, `rate`,
    /// `rate_source`, `rate_date`, `original_amount`, `original_currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<ConvertSpec>,
}

/// `convert:` of a mapped amount.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertSpec {
    /// The amount's currency: a JSON Pointer to the field holding its ISO 4217 code
    /// (`/currency`), or a code (`GBP`).
    pub currency: String,
    /// The ISO 4217 code to convert to (`EUR`).
    pub to: String,
}

impl MapFieldSpec {
    /// What is wrong with the field's shape, if anything, as the key to report it at and the
    /// message: not exactly one source, `each` without `map` (or the reverse), `type` on an
    /// `each`, or `optional` beside a different `missing`. Templates are checked elsewhere.
    pub fn shape_problem(&self) -> Option<(&'static str, String)> {
        let sources = [
            self.template.is_some(),
            self.from.is_some(),
            self.value.is_some(),
            self.each.is_some(),
        ];
        if self.map.is_some() && self.each.is_none() {
            return Some((
                "map",
                "`map` is the per-item mapping of `each`; add `each: /<array>`".into(),
            ));
        }
        if sources.iter().filter(|given| **given).count() != 1 {
            return Some((
                "",
                "give exactly one of `template`, `from`, `value` or `each`".into(),
            ));
        }
        if self.each.is_some() && self.map.is_none() {
            return Some((
                "each",
                "`each` needs `map:`, the fields of one output item".into(),
            ));
        }
        if self.each.is_some() && self.value_type.is_some() {
            return Some((
                "type",
                "`type` does not apply to `each` (it builds an array); give each item field \
                 its own `type`"
                    .into(),
            ));
        }
        if self.convert.is_some() && self.from.is_none() {
            return Some((
                "convert",
                "`convert` converts the amount `from:` points at; add `from: /<amount>`".into(),
            ));
        }
        if self.convert.is_some() && self.value_type.is_some() {
            return Some((
                "type",
                "`type` does not apply to `convert` (it builds an object recording the rate)"
                    .into(),
            ));
        }
        if self.optional && !matches!(self.missing, None | Some(Missing::Null)) {
            return Some((
                "optional",
                "`optional: true` means `missing: null`; write only `missing:`".into(),
            ));
        }
        None
    }
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
