//! Record filters: a flow's `where:` conditions, which say which records the flow acts on.
//!
//! A record that fails a condition is *filtered out*: it is not delivered, not dead-lettered
//! and not recorded as processed; the run counts it (the `RecordFiltered` event and the
//! `switchyard_records_filtered_total` metric) and the checkpoint moves past it. Conditions
//! are compiled once into the flow's plan ([`RecordFilter`]); evaluating one is a lookup and
//! a comparison.
//!
//! ```yaml
//! where:
//!   - field: order_state            # a field path, or a JSON Pointer (`/order_state`)
//!     equals: WAITING_ACCEPTANCE
//!   - field: channel
//!     one_of: [web, app]
//!   - field: /flags/test
//!     not_equals: true
//!   - field: customer.email
//!     exists: true                   # `false`: the field must be missing
//! ```
//!
//! All conditions must hold. A field that is absent or `null` is *missing*: it equals nothing,
//! is one of nothing, differs from every value, and fails `exists: true`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mapping::FieldPath;

/// One `where:` condition on a record field. Give `field` and exactly one test.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// The field tested: a field path (`order.state`, `lines.0.sku`) or a JSON Pointer
    /// (`/order/state`).
    pub field: String,
    /// The field must equal this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// The field must be missing or differ from this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// The field must equal one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// `true`: the field must be present (and not `null`); `false`: it must be missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl ConditionConfig {
    /// The names of the tests this condition gives (validation wants exactly one).
    pub fn tests(&self) -> Vec<&'static str> {
        let mut tests = Vec::new();
        if self.equals.is_some() {
            tests.push("equals");
        }
        if self.not_equals.is_some() {
            tests.push("not_equals");
        }
        if self.one_of.is_some() {
            tests.push("one_of");
        }
        if self.exists.is_some() {
            tests.push("exists");
        }
        tests
    }

    /// The record field the condition starts at (the first step of its path), for checks
    /// against the contract.
    pub fn first_field(&self) -> Option<String> {
        match self.field.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .next()
                .map(|s| s.replace("~1", "/").replace("~0", "~")),
            None => self
                .field
                .split(['.', '/'])
                .find(|s| !s.is_empty())
                .map(str::to_owned),
        }
        .filter(|s| !s.is_empty())
    }
}

/// A compiled `where:` block; the empty filter keeps every record.
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    conditions: Vec<Condition>,
}

/// A compiled condition.
#[derive(Debug, Clone)]
struct Condition {
    /// The field as written, for messages.
    field: String,
    locate: Locate,
    test: Test,
}

#[derive(Debug, Clone)]
enum Locate {
    Pointer(String),
    Path(FieldPath),
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    NotEquals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
}

/// A condition that gives no test, or more than one. Validation reports it with its line;
/// this is the guard for what it let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("where condition on `{field}` must give exactly one of equals, not_equals, one_of, exists")]
pub struct FilterError {
    /// The condition's field.
    pub field: String,
}

impl RecordFilter {
    /// Compiles a flow's `where:` conditions.
    pub fn compile(conditions: &[ConditionConfig]) -> Result<Self, FilterError> {
        let conditions = conditions
            .iter()
            .map(|c| {
                let error = || FilterError {
                    field: c.field.clone(),
                };
                if c.tests().len() != 1 {
                    return Err(error());
                }
                let test = if let Some(value) = &c.equals {
                    Test::Equals(value.clone())
                } else if let Some(value) = &c.not_equals {
                    Test::NotEquals(value.clone())
                } else if let Some(values) = &c.one_of {
                    Test::OneOf(values.clone())
                } else if let Some(exists) = c.exists {
                    Test::Exists(exists)
                } else {
                    return Err(error());
                };
                let locate = if c.field.starts_with('/') {
                    Locate::Pointer(c.field.clone())
                } else {
                    Locate::Path(FieldPath::parse(&c.field))
                };
                Ok(Condition {
                    field: c.field.clone(),
                    locate,
                    test,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { conditions })
    }

    /// Whether the filter has no conditions (keeps every record).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// `None` when the record passes every condition; otherwise the first condition it
    /// fails, described for logs and reports.
    pub fn rejects(&self, record: &Value) -> Option<String> {
        self.conditions
            .iter()
            .find(|c| !c.holds(record))
            .map(Condition::describe)
    }

    /// Each condition, described for `explain`.
    pub fn describe(&self) -> Vec<String> {
        self.conditions.iter().map(Condition::describe).collect()
    }
}

impl Condition {
    fn holds(&self, record: &Value) -> bool {
        let found = match &self.locate {
            Locate::Pointer(pointer) => record.pointer(pointer),
            Locate::Path(path) => path.lookup(record),
        }
        .filter(|v| !v.is_null());
        match (&self.test, found) {
            (Test::Exists(want), found) => *want == found.is_some(),
            (Test::Equals(want), Some(value)) => same(want, value),
            (Test::NotEquals(want), Some(value)) => !same(want, value),
            (Test::NotEquals(_), None) => true,
            (Test::OneOf(wants), Some(value)) => wants.iter().any(|w| same(w, value)),
            (Test::Equals(_) | Test::OneOf(_), None) => false,
        }
    }

    fn describe(&self) -> String {
        let field = &self.field;
        match &self.test {
            Test::Equals(v) => format!("`{field}` equals {v}"),
            Test::NotEquals(v) => format!("`{field}` does not equal {v}"),
            Test::OneOf(vs) => format!(
                "`{field}` is one of {}",
                vs.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Test::Exists(true) => format!("`{field}` is present"),
            Test::Exists(false) => format!("`{field}` is missing"),
        }
    }
}

/// JSON equality, except that numbers compare by value (`1` equals `1.0`): a vendor that
/// writes `2.0` for a status code still matches `equals: 2`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conditions(value: Value) -> Result<Vec<ConditionConfig>, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn filter(value: Value) -> RecordFilter {
        RecordFilter::compile(&conditions(value).unwrap()).unwrap()
    }

    #[test]
    fn equals_matches_the_field_by_path_or_pointer() {
        let by_path = filter(json!([{"field": "order.state", "equals": "WAITING_ACCEPTANCE"}]));
        let by_pointer = filter(json!([{"field": "/order/state", "equals": "WAITING_ACCEPTANCE"}]));
        let waiting = json!({"order": {"state": "WAITING_ACCEPTANCE"}});
        let shipping = json!({"order": {"state": "SHIPPING"}});
        for f in [&by_path, &by_pointer] {
            assert_eq!(f.rejects(&waiting), None);
            assert!(f.rejects(&shipping).is_some());
            assert!(f.rejects(&json!({})).is_some());
        }
    }

    #[test]
    fn one_of_not_equals_and_exists() {
        let f = filter(json!([
            {"field": "channel", "one_of": ["web", "app"]},
            {"field": "test", "not_equals": true},
            {"field": "email", "exists": true},
            {"field": "cancelled_at", "exists": false},
        ]));
        let good = json!({"channel": "app", "email": "a@b", "cancelled_at": null});
        assert_eq!(f.rejects(&good), None);
        let mut test_order = good.clone();
        test_order["test"] = json!(true);
        assert_eq!(
            f.rejects(&test_order).as_deref(),
            Some("`test` does not equal true")
        );
        let mut other_channel = good.clone();
        other_channel["channel"] = json!("phone");
        assert!(f.rejects(&other_channel).is_some());
        let mut cancelled = good.clone();
        cancelled["cancelled_at"] = json!("2026-01-01");
        assert_eq!(
            f.rejects(&cancelled).as_deref(),
            Some("`cancelled_at` is missing")
        );
        let mut no_email = good;
        no_email["email"] = Value::Null;
        assert!(f.rejects(&no_email).is_some());
    }

    #[test]
    fn numbers_compare_by_value() {
        let f = filter(json!([{"field": "status", "equals": 2}]));
        assert_eq!(f.rejects(&json!({"status": 2.0})), None);
        assert!(f.rejects(&json!({"status": "2"})).is_some());
    }

    #[test]
    fn a_condition_needs_exactly_one_test() {
        let none = conditions(json!([{"field": "a"}])).unwrap();
        assert!(RecordFilter::compile(&none).is_err());
        let two = conditions(json!([{"field": "a", "equals": 1, "exists": true}])).unwrap();
        assert!(RecordFilter::compile(&two).is_err());
        let unknown = conditions(json!([{"field": "a", "eq": 1}]));
        assert!(unknown.is_err());
    }

    #[test]
    fn first_field_reads_paths_and_pointers() {
        let c = |field: &str| ConditionConfig {
            field: field.into(),
            equals: None,
            not_equals: None,
            one_of: None,
            exists: Some(true),
        };
        assert_eq!(c("order.state").first_field().as_deref(), Some("order"));
        assert_eq!(c("/a~1b/c").first_field().as_deref(), Some("a/b"));
        assert_eq!(c("/").first_field(), None);
    }
}
