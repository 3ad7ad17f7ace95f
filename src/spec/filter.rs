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
//!   - field: stock_updated_at
//!     older_than: 1d                 # an RFC 3339 time more than 1d before the runtime's clock
//!   - field: quantity
//!     less_than_field: open_order_quantity   # both exact decimals; `quantity < open_order_quantity`
//! ```
//!
//! All conditions must hold. A field that is absent or `null` is *missing*: it equals nothing,
//! is one of nothing, differs from every value, and fails `exists: true`. `older_than` and
//! `less_than_field` cannot be decided on a missing field, a time that is not RFC 3339 or a
//! value that is not a decimal: such a condition does not hold, and says why. The same
//! conditions name what a flow's `checks:` flag (see [`super::checks`]), where an undecidable
//! condition flags the record rather than letting it through.

use std::time::Duration;

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
    /// The field is an RFC 3339 time (`2026-11-27T09:00:00Z`) more than this duration before
    /// the runtime's clock (`15m`, `1d`), or `sla` for the flow's `sla.freshness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// The field is a number (or decimal text) smaller than this other field of the record
    /// (a field path or a JSON Pointer), compared exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less_than_field: Option<String>,
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
        if self.older_than.is_some() {
            tests.push("older_than");
        }
        if self.less_than_field.is_some() {
            tests.push("less_than_field");
        }
        tests
    }

    /// The record field the condition starts at (the first step of its path), for checks
    /// against the contract.
    pub fn first_field(&self) -> Option<String> {
        first_field_of(&self.field)
    }
}

/// The record field a path or pointer starts at.
pub(crate) fn first_field_of(field: &str) -> Option<String> {
    {
        match field.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .next()
                .map(|s| s.replace("~1", "/").replace("~0", "~")),
            None => field
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
pub(crate) struct Condition {
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
    /// Older than the duration before the runtime's clock; `sla` when it is the flow's SLA.
    OlderThan {
        by: Duration,
        /// The duration as written (`1d`), or the SLA's for `sla`.
        text: String,
        sla: bool,
    },
    LessThanField {
        other: String,
        locate: Locate,
    },
}

/// What a condition says of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It holds.
    Holds,
    /// It does not hold.
    Fails,
    /// It cannot be decided (a missing field, a time or an amount that does not parse): why.
    Undecidable(String),
}

/// A condition that gives no test, or more than one, or a test that does not parse.
/// Validation reports it with its line; this is the guard for what it let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition on `{field}`: {message}")]
pub struct FilterError {
    /// The condition's field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The tests a condition may give, for messages.
pub(crate) const TESTS: &str = "equals, not_equals, one_of, exists, older_than, less_than_field";

impl RecordFilter {
    /// Compiles a flow's `where:` conditions; `freshness` is the flow's `sla.freshness`, for
    /// `older_than: sla`.
    pub fn compile(
        conditions: &[ConditionConfig],
        freshness: Option<(Duration, &str)>,
    ) -> Result<Self, FilterError> {
        let conditions = conditions
            .iter()
            .map(|c| Condition::compile(c, freshness))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { conditions })
    }

    /// Whether the filter has no conditions (keeps every record).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// `None` when the record passes every condition at `now_ms` (Unix milliseconds of the
    /// runtime's clock); otherwise the first condition it fails, described for logs and
    /// reports.
    pub fn rejects(&self, record: &Value, now_ms: i64) -> Option<String> {
        self.conditions
            .iter()
            .find_map(|c| match c.verdict(record, now_ms) {
                Verdict::Holds => None,
                Verdict::Fails => Some(c.describe()),
                Verdict::Undecidable(why) => Some(format!("{} ({why})", c.describe())),
            })
    }

    /// Each condition, described for `explain`.
    pub fn describe(&self) -> Vec<String> {
        self.conditions.iter().map(Condition::describe).collect()
    }
}

impl Condition {
    /// Compiles one condition; `freshness` serves `older_than: sla`.
    pub(crate) fn compile(
        c: &ConditionConfig,
        freshness: Option<(Duration, &str)>,
    ) -> Result<Self, FilterError> {
        let error = |message: String| FilterError {
            field: c.field.clone(),
            message,
        };
        if c.tests().len() != 1 {
            return Err(error(format!("give exactly one of {TESTS}")));
        }
        let test = if let Some(value) = &c.equals {
            Test::Equals(value.clone())
        } else if let Some(value) = &c.not_equals {
            Test::NotEquals(value.clone())
        } else if let Some(values) = &c.one_of {
            Test::OneOf(values.clone())
        } else if let Some(exists) = c.exists {
            Test::Exists(exists)
        } else if let Some(age) = &c.older_than {
            if age == "sla" {
                let (by, text) = freshness.ok_or_else(|| {
                    error("`older_than: sla` needs the flow's `sla.freshness`".into())
                })?;
                Test::OlderThan {
                    by,
                    text: text.to_owned(),
                    sla: true,
                }
            } else {
                let by =
                    super::parse_duration(age).map_err(|e| error(format!("older_than: {e}")))?;
                Test::OlderThan {
                    by,
                    text: age.clone(),
                    sla: false,
                }
            }
        } else if let Some(other) = &c.less_than_field {
            Test::LessThanField {
                other: other.clone(),
                locate: Locate::of(other),
            }
        } else {
            return Err(error(format!("give exactly one of {TESTS}")));
        };
        Ok(Condition {
            field: c.field.clone(),
            locate: Locate::of(&c.field),
            test,
        })
    }

    /// Whether the condition holds for `record` at `now_ms`.
    pub(crate) fn verdict(&self, record: &Value, now_ms: i64) -> Verdict {
        let found = self.locate.find(record);
        let verdict = |holds: bool| {
            if holds {
                Verdict::Holds
            } else {
                Verdict::Fails
            }
        };
        match (&self.test, found) {
            (Test::Exists(want), found) => verdict(*want == found.is_some()),
            (Test::Equals(want), Some(value)) => verdict(same(want, value)),
            (Test::NotEquals(want), Some(value)) => verdict(!same(want, value)),
            (Test::NotEquals(_), None) => Verdict::Holds,
            (Test::OneOf(wants), Some(value)) => verdict(wants.iter().any(|w| same(w, value))),
            (Test::Equals(_) | Test::OneOf(_), None) => Verdict::Fails,
            (Test::OlderThan { .. } | Test::LessThanField { .. }, None) => {
                Verdict::Undecidable(format!("`{}` is missing", self.field))
            }
            (Test::OlderThan { by, .. }, Some(value)) => {
                let Some(at) = value
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                else {
                    return Verdict::Undecidable(format!(
                        "`{}` is {value}, not an RFC 3339 time such as 2026-11-27T09:00:00Z",
                        self.field
                    ));
                };
                let limit = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
                verdict(now_ms.saturating_sub(at.as_millisecond()) > limit)
            }
            (Test::LessThanField { other, locate }, Some(value)) => {
                let Some(other_value) = locate.find(record) else {
                    return Verdict::Undecidable(format!("`{other}` is missing"));
                };
                match (
                    crate::money::amount_of(value),
                    crate::money::amount_of(other_value),
                ) {
                    (Ok(a), Ok(b)) => verdict(a < b),
                    (Err(_), _) => {
                        Verdict::Undecidable(format!("`{}` is {value}, not a number", self.field))
                    }
                    (_, Err(_)) => {
                        Verdict::Undecidable(format!("`{other}` is {other_value}, not a number"))
                    }
                }
            }
        }
    }

    /// The value of the condition's field in `record`, for messages.
    pub(crate) fn value_in<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        self.locate.find(record)
    }

    /// The other field a `less_than_field` condition compares with, and its value.
    pub(crate) fn other_in<'v>(&self, record: &'v Value) -> Option<(&str, &'v Value)> {
        match &self.test {
            Test::LessThanField { other, locate } => Some((other, locate.find(record)?)),
            _ => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
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
            Test::OlderThan { text, sla, .. } => format!(
                "`{field}` is older than {text}{}",
                if *sla {
                    " (the flow's freshness SLA)"
                } else {
                    ""
                }
            ),
            Test::LessThanField { other, .. } => format!("`{field}` is less than `{other}`"),
        }
    }
}

impl Locate {
    fn of(field: &str) -> Self {
        if field.starts_with('/') {
            Locate::Pointer(field.to_owned())
        } else {
            Locate::Path(FieldPath::parse(field))
        }
    }

    /// The field's value; `None` when it is absent or `null`.
    fn find<'v>(&self, record: &'v Value) -> Option<&'v Value> {
        match self {
            Locate::Pointer(pointer) => record.pointer(pointer),
            Locate::Path(path) => path.lookup(record),
        }
        .filter(|v| !v.is_null())
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
        RecordFilter::compile(&conditions(value).unwrap(), None).unwrap()
    }

    /// 2026-11-27T12:00:00Z.
    const NOW: i64 = 1_795_780_800_000;

    #[test]
    fn equals_matches_the_field_by_path_or_pointer() {
        let by_path = filter(json!([{"field": "order.state", "equals": "WAITING_ACCEPTANCE"}]));
        let by_pointer = filter(json!([{"field": "/order/state", "equals": "WAITING_ACCEPTANCE"}]));
        let waiting = json!({"order": {"state": "WAITING_ACCEPTANCE"}});
        let shipping = json!({"order": {"state": "SHIPPING"}});
        for f in [&by_path, &by_pointer] {
            assert_eq!(f.rejects_now(&waiting), None);
            assert!(f.rejects_now(&shipping).is_some());
            assert!(f.rejects_now(&json!({})).is_some());
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
        assert_eq!(f.rejects_now(&good), None);
        let mut test_order = good.clone();
        test_order["test"] = json!(true);
        assert_eq!(
            f.rejects_now(&test_order).as_deref(),
            Some("`test` does not equal true")
        );
        let mut other_channel = good.clone();
        other_channel["channel"] = json!("phone");
        assert!(f.rejects_now(&other_channel).is_some());
        let mut cancelled = good.clone();
        cancelled["cancelled_at"] = json!("2026-01-01");
        assert_eq!(
            f.rejects_now(&cancelled).as_deref(),
            Some("`cancelled_at` is missing")
        );
        let mut no_email = good;
        no_email["email"] = Value::Null;
        assert!(f.rejects_now(&no_email).is_some());
    }

    impl RecordFilter {
        fn rejects_now(&self, record: &Value) -> Option<String> {
            self.rejects(record, NOW)
        }
    }

    #[test]
    fn older_than_compares_a_time_with_the_clock() {
        let f = filter(json!([{"field": "stock_updated_at", "older_than": "1d"}]));
        assert_eq!(
            f.rejects_now(&json!({"stock_updated_at": "2026-11-25T12:00:00Z"})),
            None
        );
        // Exactly one day old is not older than a day; offsets count.
        assert_eq!(
            f.rejects_now(&json!({"stock_updated_at": "2026-11-26T13:00:00+01:00"})),
            Some("`stock_updated_at` is older than 1d".into())
        );
        assert_eq!(
            f.rejects_now(&json!({"stock_updated_at": "2026-11-26T11:59:59Z"})),
            None
        );
        assert_eq!(
            f.rejects_now(&json!({"stock_updated_at": "2026-11-26T12:00:01Z"})),
            Some("`stock_updated_at` is older than 1d".into())
        );
        assert_eq!(
            f.rejects_now(&json!({"stock_updated_at": "yesterday"})),
            Some(
                "`stock_updated_at` is older than 1d (`stock_updated_at` is \"yesterday\", not \
                 an RFC 3339 time such as 2026-11-27T09:00:00Z)"
                    .into()
            )
        );
        assert!(f.rejects_now(&json!({})).unwrap().contains("is missing"));
        let sla = RecordFilter::compile(
            &conditions(json!([{"field": "at", "older_than": "sla"}])).unwrap(),
            Some((Duration::from_secs(900), "15m")),
        )
        .unwrap();
        // In `where:` the condition must hold: only records older than the SLA pass.
        assert_eq!(
            sla.rejects_now(&json!({"at": "2026-11-27T11:40:00Z"})),
            None
        );
        assert_eq!(
            sla.rejects_now(&json!({"at": "2026-11-27T11:50:00Z"})),
            Some("`at` is older than 15m (the flow's freshness SLA)".into())
        );
        let no_sla = conditions(json!([{"field": "at", "older_than": "sla"}])).unwrap();
        assert!(RecordFilter::compile(&no_sla, None).is_err());
        let bad = conditions(json!([{"field": "at", "older_than": "soon"}])).unwrap();
        assert!(RecordFilter::compile(&bad, None).is_err());
    }

    #[test]
    fn less_than_field_compares_two_amounts_exactly() {
        let f = filter(json!([{"field": "quantity", "less_than_field": "/open_order_quantity"}]));
        let rejects = |q: Value, open: Value| {
            f.rejects_now(&json!({"quantity": q, "open_order_quantity": open}))
        };
        assert_eq!(rejects(json!(2), json!(5)), None);
        assert_eq!(
            rejects(json!(5), json!(5)),
            Some("`quantity` is less than `/open_order_quantity`".into())
        );
        assert_eq!(
            rejects(json!("19.9"), json!("19.90")).as_deref(),
            Some("`quantity` is less than `/open_order_quantity`")
        );
        assert_eq!(
            rejects(json!("10"), json!("9.5")),
            Some("`quantity` is less than `/open_order_quantity`".into())
        );
        assert_eq!(rejects(json!(1), json!(2)), None);
        assert!(
            rejects(json!(1), json!(null))
                .unwrap()
                .contains("`/open_order_quantity` is missing")
        );
        assert!(
            rejects(json!("x"), json!(2))
                .unwrap()
                .contains("not a number")
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let f = filter(json!([{"field": "status", "equals": 2}]));
        assert_eq!(f.rejects_now(&json!({"status": 2.0})), None);
        assert!(f.rejects_now(&json!({"status": "2"})).is_some());
    }

    #[test]
    fn a_condition_needs_exactly_one_test() {
        let none = conditions(json!([{"field": "a"}])).unwrap();
        assert!(RecordFilter::compile(&none, None).is_err());
        let two = conditions(json!([{"field": "a", "equals": 1, "exists": true}])).unwrap();
        assert!(RecordFilter::compile(&two, None).is_err());
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
            older_than: None,
            less_than_field: None,
        };
        assert_eq!(c("order.state").first_field().as_deref(), Some("order"));
        assert_eq!(c("/a~1b/c").first_field().as_deref(), Some("a/b"));
        assert_eq!(c("/").first_field(), None);
    }
}
