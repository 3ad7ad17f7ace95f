//! Object contracts: a JSON Schema per business object, compiled once and checked per record.
//!
//! A violation carries a short machine `reason` besides the validator's messages, so reject
//! reports can be grouped: `missing_<field>` for a required field that is absent or `null`,
//! the `x-reason` annotation of the failing property when the contract gives one (for example
//! `"quantity": {"minimum": 0, "x-reason": "negative_quantity"}`), `invalid_<field>` otherwise.

use serde_json::Value;

/// A compiled contract.
pub struct Contract {
    schema: Value,
    validator: jsonschema::Validator,
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
        Ok(Self {
            schema: schema.clone(),
            validator,
        })
    }

    /// The top-level property names the contract declares.
    pub fn properties(&self) -> Vec<String> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| props.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks one record.
    pub fn check(&self, record: &Value) -> Result<(), ContractViolation> {
        if self.validator.is_valid(record) {
            return Ok(());
        }
        let mut reason = None;
        let mut messages = Vec::new();
        for error in self.validator.iter_errors(record).take(MAX_MESSAGES) {
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

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(Contract::compile(&json!({"type": "no-such-type"})).is_err());
    }
}
