//! Money in contracts: an amount property annotated with its currency is checked against the
//! currency's ISO 4217 minor units, which JSON Schema cannot express.
//!
//! ```json
//! "amount":   { "type": "string", "x-currency-field": "currency" },
//! "currency": { "type": "string" },
//! "fee":      { "type": "string", "x-currency": "EUR" }
//! ```
//!
//! `x-currency-field` names the sibling property holding the ISO code; `x-currency` fixes the
//! code. `"12.345"` with `EUR` breaks the contract (`/amount: 12.345 has more fraction digits
//! than EUR has minor units (2)...`); so does an amount that is not a decimal or a currency
//! code that is not ISO 4217. An absent or `null` amount or currency is left to `required` and
//! `type`. Annotations are found under `properties` and `items`, to a bounded depth, not
//! behind `$ref`.

use serde_json::Value;

use crate::money::{self, Currency, Money};

/// The annotation naming the sibling property that holds an amount's currency.
pub const CURRENCY_FIELD: &str = "x-currency-field";
/// The annotation fixing an amount's currency.
pub const CURRENCY: &str = "x-currency";

/// How deep annotations are looked for: contracts of real payloads nest a few levels.
const MAX_DEPTH: usize = 16;

/// The annotated amounts of one contract.
#[derive(Debug, Clone, Default)]
pub(crate) struct MoneyFields {
    fields: Vec<MoneyField>,
}

/// One problem: the instance path, the message and the property's `x-reason`, if any.
pub(crate) struct MoneyProblem {
    pub(crate) path: String,
    pub(crate) message: String,
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone)]
struct MoneyField {
    /// The way from the record to the object holding the amount.
    at: Vec<Step>,
    amount: String,
    currency: CurrencySource,
    reason: Option<String>,
}

#[derive(Debug, Clone)]
enum Step {
    Property(String),
    Items,
}

#[derive(Debug, Clone)]
enum CurrencySource {
    Field(String),
    Fixed(Currency),
}

impl MoneyFields {
    /// Finds the annotated amounts of a schema; a malformed annotation is an error naming
    /// where it is.
    pub(crate) fn collect(schema: &Value) -> Result<Self, String> {
        let mut fields = Vec::new();
        walk(schema, &mut Vec::new(), &mut fields, "#")?;
        Ok(Self { fields })
    }

    /// Whether the contract has no annotated amount.
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every annotated amount of `record` that breaks its currency's minor units.
    pub(crate) fn problems(&self, record: &Value) -> Vec<MoneyProblem> {
        let mut problems = Vec::new();
        for field in &self.fields {
            let mut objects = Vec::new();
            locate(record, &field.at, String::new(), &mut objects);
            for (path, object) in objects {
                if let Some(problem) = field.check(object, &path) {
                    problems.push(problem);
                }
            }
        }
        problems
    }
}

impl MoneyField {
    fn check(&self, object: &serde_json::Map<String, Value>, path: &str) -> Option<MoneyProblem> {
        let amount = object.get(&self.amount).filter(|v| !v.is_null())?;
        let amount_path = format!("{path}/{}", escape(&self.amount));
        let problem = |path: String, message: String| MoneyProblem {
            path,
            message,
            reason: self.reason.clone(),
        };
        let currency = match &self.currency {
            CurrencySource::Fixed(currency) => *currency,
            CurrencySource::Field(name) => {
                let code = object.get(name).filter(|v| !v.is_null())?;
                match Currency::from_value(code) {
                    Ok(currency) => currency,
                    Err(err) => {
                        return Some(problem(
                            format!("{path}/{}", escape(name)),
                            format!("currency of `{}`: {err}", self.amount),
                        ));
                    }
                }
            }
        };
        let result = money::amount_of(amount).and_then(|a| Money::new(a, currency));
        match result {
            Ok(_) => None,
            Err(err) => Some(problem(amount_path, err.to_string())),
        }
    }
}

fn walk(
    schema: &Value,
    at: &mut Vec<Step>,
    out: &mut Vec<MoneyField>,
    where_: &str,
) -> Result<(), String> {
    if at.len() > MAX_DEPTH {
        return Ok(());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{where_}/properties/{}", escape(name));
            let field = property.get(CURRENCY_FIELD);
            let fixed = property.get(CURRENCY);
            let currency = match (field, fixed) {
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{here}: give `{CURRENCY_FIELD}` or `{CURRENCY}`, not both"
                    ));
                }
                (Some(Value::String(sibling)), None) => {
                    Some(CurrencySource::Field(sibling.clone()))
                }
                (Some(other), None) => {
                    return Err(format!(
                        "{here}: `{CURRENCY_FIELD}` names the sibling property holding the \
                         currency code, as a string, not {other}"
                    ));
                }
                (None, Some(code)) => Some(CurrencySource::Fixed(
                    Currency::from_value(code).map_err(|err| format!("{here}: {err}"))?,
                )),
            };
            if let Some(currency) = currency {
                out.push(MoneyField {
                    at: at.clone(),
                    amount: name.clone(),
                    currency,
                    reason: property
                        .get("x-reason")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
            at.push(Step::Property(name.clone()));
            walk(property, at, out, &here)?;
            at.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        at.push(Step::Items);
        walk(items, at, out, &format!("{where_}/items"))?;
        at.pop();
    }
    Ok(())
}

/// The objects of `value` that `steps` lead to, with their instance paths.
fn locate<'v>(
    value: &'v Value,
    steps: &[Step],
    path: String,
    out: &mut Vec<(String, &'v serde_json::Map<String, Value>)>,
) {
    match steps.split_first() {
        None => {
            if let Value::Object(object) = value {
                out.push((path, object));
            }
        }
        Some((Step::Property(name), rest)) => {
            if let Some(inner) = value.get(name) {
                locate(inner, rest, format!("{path}/{}", escape(name)), out);
            }
        }
        Some((Step::Items, rest)) => {
            if let Value::Array(items) = value {
                for (index, item) in items.iter().enumerate() {
                    locate(item, rest, format!("{path}/{index}"), out);
                }
            }
        }
    }
}

/// A property name as a JSON Pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
