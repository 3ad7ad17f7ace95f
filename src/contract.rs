//! Object contracts: a JSON Schema per business object, compiled once and checked per record.
//!
//! A violation carries a short machine `reason` besides the validator's messages, so reject
//! reports can be grouped: `missing_<field>` for a required field that is absent or `null`,
//! the `x-reason` annotation of the failing property when the contract gives one (for example
//! `"quantity": {"minimum": 0, "x-reason": "negative_quantity"}`), `invalid_<field>` otherwise.
//!
//! Vendors publish schemas their own payloads break, most often with `null` in a field typed
//! `string`. A contract with lenient nulls ([`Contract::with_lenient_nulls`]) accepts a record
//! whose only violations are such nulls and counts them, so the runtime reports a warning
//! instead of a dead letter; any other violation still fails the record.
//!
//! Amounts annotated with their currency (`"x-currency-field": "currency"`) are also checked
//! against the currency's ISO 4217 minor units (see [`money`]).

pub mod document;
pub mod money;

use serde_json::Value;

/// A compiled contract.
pub struct Contract {
    schema: Value,
    validator: jsonschema::Validator,
    lenient_nulls: bool,
    money: money::MoneyFields,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").finish_non_exhaustive()
    }
}

/// A contract that is not a valid JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid JSON Schema: {0}")]
pub struct ContractError(pub String);

/// A record that breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {}", messages.join("; "))]
pub struct ContractViolation {
    /// A short machine reason (`missing_price`, `negative_quantity`).
    pub reason: String,
    /// Every problem, as `instance path: message`.
    pub messages: Vec<String>,
}

/// The most problems listed per record; one broken record should not produce a novel.
const MAX_MESSAGES: usize = 10;

impl Contract {
    /// Compiles a JSON Schema.
    pub fn compile(schema: &Value) -> Result<Self, ContractError> {
        let validator =
            jsonschema::validator_for(schema).map_err(|err| ContractError(err.to_string()))?;
        let money = money::MoneyFields::collect(schema).map_err(ContractError)?;
        Ok(Self {
            schema: schema.clone(),
            validator,
            lenient_nulls: false,
            money,
        })
    }

    /// Whether `null` in a typed field is tolerated (counted) instead of a violation.
    pub fn with_lenient_nulls(mut self, lenient: bool) -> Self {
        self.lenient_nulls = lenient;
        self
    }

    /// The JSON Schema the contract was compiled from.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The names of the top-level properties the schema declares.
    pub fn properties(&self) -> Vec<String> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks one record.
    pub fn check(&self, record: &Value) -> Result<(), ContractViolation> {
        self.check_counting_nulls(record).map(|_| ())
    }

    /// Checks one record; with lenient nulls, returns how many `null`s in typed fields were
    /// tolerated (0 for a record that satisfies the contract as written).
    pub fn check_counting_nulls(&self, record: &Value) -> Result<usize, ContractViolation> {
        let money = if self.money.is_empty() {
            Vec::new()
        } else {
            self.money.problems(record)
        };
        if self.validator.is_valid(record) {
            return match money_violation(money) {
                None => Ok(0),
                Some(violation) => Err(violation),
            };
        }
        let mut tolerated = 0;
        if self.lenient_nulls && money.is_empty() {
            let mut other = false;
            for error in self.validator.iter_errors(record) {
                if is_null_in_typed_field(&error) {
                    tolerated += 1;
                } else {
                    other = true;
                    break;
                }
            }
            if !other {
                return Ok(tolerated);
            }
        }
        let mut reason = None;
        let mut messages = Vec::new();
        let errors = self
            .validator
            .iter_errors(record)
            .filter(|error| !(self.lenient_nulls && is_null_in_typed_field(error)));
        for error in errors.take(MAX_MESSAGES) {
            let instance_path = error.instance_path().to_string();
            if reason.is_none() {
                reason = Some(self.reason_for(&error, &instance_path));
            }
            let at = if instance_path.is_empty() {
                "record"
            } else {
                &instance_path
            };
            messages.push(format!("{at}: {}", error.masked()));
        }
        for problem in money {
            if messages.len() == MAX_MESSAGES {
                break;
            }
            messages.push(format!("{}: {}", problem.path, problem.message));
        }
        Err(ContractViolation {
            reason: reason.unwrap_or_else(|| "invalid_record".into()),
            messages,
        })
    }

    fn reason_for(&self, error: &jsonschema::ValidationError<'_>, instance_path: &str) -> String {
        if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind() {
            return format!("missing_{}", property.as_str().unwrap_or("field"));
        }
        let field = instance_path.rsplit('/').next().unwrap_or_default();
        if error.instance().is_null() && !field.is_empty() {
            return format!("missing_{field}");
        }
        // The schema node of the failing property is the schema path minus its keyword.
        let schema_path = error.schema_path().to_string();
        let property_schema = schema_path.rsplit_once('/').map(|(parent, _)| parent);
        if let Some(reason) = property_schema
            .and_then(|pointer| self.schema.pointer(pointer))
            .and_then(|node| node.get("x-reason"))
            .and_then(Value::as_str)
        {
            return reason.to_owned();
        }
        if field.is_empty() {
            "invalid_record".into()
        } else {
            format!("invalid_{field}")
        }
    }
}

/// The violation of a record whose only problems are amounts that break their currency's
/// minor units, if it has any.
fn money_violation(problems: Vec<money::MoneyProblem>) -> Option<ContractViolation> {
    let first = problems.first()?;
    let reason = first.reason.clone().unwrap_or_else(|| {
        let field = first.path.rsplit('/').next().unwrap_or_default();
        format!("invalid_{field}")
    });
    Some(ContractViolation {
        reason,
        messages: problems
            .iter()
            .take(MAX_MESSAGES)
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect(),
    })
}

/// A `null` where the schema declares a type (`"type": "string"`): the vendor habit lenient
/// contracts tolerate. A `null` for the record itself is never tolerated.
fn is_null_in_typed_field(error: &jsonschema::ValidationError<'_>) -> bool {
    matches!(
        error.kind(),
        jsonschema::error::ValidationErrorKind::Type { .. }
    ) && error.instance().is_null()
        && !error.instance_path().to_string().is_empty()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn offer_contract() -> Contract {
        Contract::compile(&json!({
            "type": "object",
            "required": ["offer_id", "price", "quantity"],
            "properties": {
                "offer_id": {"type": "integer"},
                "price": {"type": ["string", "number"]},
                "quantity": {"type": "integer", "minimum": 0, "x-reason": "negative_quantity"},
                "currency_iso_code": {"enum": ["EUR", "USD", "GBP"]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn valid_records_pass() {
        let record = json!({"offer_id": 1, "price": "1.00", "quantity": 0});
        assert_eq!(offer_contract().check(&record), Ok(()));
    }

    #[test]
    fn reasons_are_derived() {
        let c = offer_contract();
        let reason = |r: Value| c.check(&r).unwrap_err().reason;
        assert_eq!(
            reason(json!({"offer_id": 1, "quantity": 1})),
            "missing_price"
        );
        assert_eq!(
            reason(json!({"offer_id": 1, "price": null, "quantity": 1})),
            "missing_price"
        );
        assert_eq!(
            reason(json!({"offer_id": 1, "price": "1", "quantity": -2})),
            "negative_quantity"
        );
        assert_eq!(
            reason(json!({"offer_id": 1, "price": "1", "quantity": 1, "currency_iso_code": "XYZ"})),
            "invalid_currency_iso_code"
        );
        assert_eq!(reason(json!([1, 2])), "invalid_record");
    }

    #[test]
    fn messages_name_the_path() {
        let err = offer_contract().check(&json!({"offer_id": "x", "price": "1", "quantity": 1}));
        let err = err.unwrap_err();
        assert!(err.messages[0].starts_with("/offer_id:"), "{err:?}");
    }

    fn settlement_contract() -> Contract {
        Contract::compile(&json!({
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": ["string", "number"], "x-currency-field": "currency"},
                "currency": {"type": "string"},
                "fee": {"type": "string", "x-currency": "JPY", "x-reason": "fee_precision"},
                "lines": {"type": "array", "items": {"type": "object", "properties": {
                    "net": {"type": "string", "x-currency-field": "ccy"},
                    "ccy": {"type": "string"}
                }}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn amounts_are_checked_against_their_currency_minor_units() {
        let c = settlement_contract();
        for fine in [
            json!({"amount": "12.34", "currency": "EUR"}),
            json!({"amount": "12.340", "currency": "EUR"}),
            json!({"amount": 1200, "currency": "JPY"}),
            json!({"amount": "1.234", "currency": "BHD", "fee": "15"}),
            json!({"amount": "1.2345", "currency": "CLF", "lines": [{"net": "1", "ccy": "KRW"}]}),
        ] {
            assert_eq!(c.check(&fine), Ok(()), "{fine}");
        }
        let err = c
            .check(&json!({"amount": "12.345", "currency": "EUR"}))
            .unwrap_err();
        assert_eq!(err.reason, "invalid_amount");
        assert_eq!(
            err.messages,
            [
                "/amount: 12.345 has more fraction digits than EUR has minor units (2); refusing \
              to round money: correct the amount at its source"
            ]
        );
        let err = c
            .check(&json!({"amount": "5.5", "currency": "JPY"}))
            .unwrap_err();
        assert!(
            err.messages[0].contains("JPY has minor units (0)"),
            "{err:?}"
        );
        let err = c
            .check(&json!({"amount": "1", "currency": "EUR", "fee": "1.5"}))
            .unwrap_err();
        assert_eq!(err.reason, "fee_precision");
        let err = c
            .check(&json!({"amount": "1", "currency": "EUR",
                           "lines": [{"net": "1", "ccy": "EUR"}, {"net": "1.001", "ccy": "USD"}]}))
            .unwrap_err();
        assert_eq!(err.reason, "invalid_net");
        assert!(
            err.messages[0].starts_with("/lines/1/net: 1.001 has more"),
            "{err:?}"
        );
        let err = c
            .check(&json!({"amount": "1", "currency": "EUX"}))
            .unwrap_err();
        assert_eq!(err.reason, "invalid_currency");
        assert!(err.messages[0].starts_with("/currency: currency of `amount`: \"EUX\""));
        let err = c
            .check(&json!({"amount": "twelve", "currency": "EUR"}))
            .unwrap_err();
        assert!(
            err.messages[0].contains("is not a decimal amount"),
            "{err:?}"
        );
        // Schema violations and money problems are reported together.
        let err = c
            .check(&json!({"amount": "1.001", "currency": "EUR", "fee": 3}))
            .unwrap_err();
        assert_eq!(err.messages.len(), 2, "{err:?}");
        // A missing currency is the schema's business (`required`), reported once.
        let err = c.check(&json!({"amount": "1.001"})).unwrap_err();
        assert_eq!(err.reason, "missing_currency");
        assert_eq!(err.messages.len(), 1, "{err:?}");
    }

    #[test]
    fn money_annotations_are_checked_at_compile() {
        let err = Contract::compile(&json!({"properties": {
            "amount": {"x-currency": "EUX"}}}))
        .unwrap_err();
        assert!(
            err.0
                .contains("#/properties/amount: \"EUX\" is not an ISO 4217"),
            "{err}"
        );
        let err = Contract::compile(&json!({"properties": {
            "amount": {"x-currency-field": 3}}}))
        .unwrap_err();
        assert!(err.0.contains("as a string"), "{err}");
        let err = Contract::compile(&json!({"properties": {
            "amount": {"x-currency-field": "c", "x-currency": "EUR"}}}))
        .unwrap_err();
        assert!(err.0.contains("not both"), "{err}");
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(Contract::compile(&json!({"type": "no-such-type"})).is_err());
    }

    #[test]
    fn lenient_nulls_are_counted_not_refused() {
        let strict = offer_contract();
        let record =
            json!({"offer_id": 1, "price": null, "quantity": 1, "currency_iso_code": null});
        assert_eq!(strict.check(&record).unwrap_err().reason, "missing_price");
        let lenient = offer_contract().with_lenient_nulls(true);
        // `price` is typed; `currency_iso_code` is an enum without a type, so its null stays
        // a violation.
        let err = lenient.check_counting_nulls(&record).unwrap_err();
        assert_eq!(err.reason, "missing_currency_iso_code");
        assert_eq!(err.messages.len(), 1, "{err:?}");
        let record = json!({"offer_id": 1, "price": null, "quantity": null});
        assert_eq!(lenient.check_counting_nulls(&record), Ok(2));
        assert_eq!(lenient.check(&record), Ok(()));
        // Absent required fields and wrong types are still violations.
        assert!(
            lenient
                .check(&json!({"offer_id": 1, "quantity": 1}))
                .is_err()
        );
        let err = lenient
            .check(&json!({"offer_id": "x", "price": null, "quantity": 1}))
            .unwrap_err();
        assert_eq!(err.reason, "invalid_offer_id");
        assert_eq!(
            lenient.check_counting_nulls(&json!({"offer_id": 1, "price": "1", "quantity": 1})),
            Ok(0)
        );
    }
}
