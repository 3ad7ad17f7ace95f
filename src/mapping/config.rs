//! The `map` section as written in a flow file. The mapping owns these types (the spec's raw
//! phase embeds them) so that `mapping` never reaches back into `spec`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One output field of a mapping.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MapField {
    /// A Handlebars template. A template that is exactly one path (`{{price}}`) copies the
    /// value with its JSON type; any other template renders a string.
    Template(String),
    /// A template or a source path, with the type of the output value.
    Detailed(MapFieldSpec),
}

/// An output field with an explicit type.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapFieldSpec {
    /// A Handlebars template rendering the value.
    #[serde(default)]
    pub template: Option<String>,
    /// JSON Pointer into the input record whose value is copied (for example `/quantity`).
    #[serde(default)]
    pub from: Option<String>,
    /// Type of the output value; the rendered text is converted and must fit.
    #[serde(default, rename = "type")]
    pub value_type: Option<ValueType>,
    /// Whether a missing input value yields `null` instead of a mapping error.
    #[serde(default)]
    pub optional: bool,
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
    /// A decimal amount, kept exact as a JSON string.
    Decimal,
    /// `true` or `false`.
    Boolean,
    /// Any JSON value, parsed from the rendered text.
    Json,
}
