//! Flow checks: named conditions that flag a record to its owner instead of delivering it —
//! stock older than the freshness SLA, a quantity below the open orders, before checkout sees
//! them.
//!
//! ```yaml
//! sla: { freshness: 15m }
//! checks:
//!   - name: stock-stale
//!     description: Stock older than the freshness SLA would sell what may be gone.
//!     when: { field: stock_updated_at, older_than: sla }
//!   - name: oversold
//!     when: { field: quantity, less_than_field: open_order_quantity }
//! failures:
//!   check-failed: { owner: seller-support, action: request-correction, runbook: "..." }
//! ```
//!
//! `when` is a condition of the `where:` grammar ([`super::filter`]) that describes the
//! breach. A record for which any check's condition holds is not delivered: it becomes a
//! `check-failed` dead letter whose reason is the check's name and whose error says the values
//! compared, routed to the owner of `check-failed`. A condition that cannot be decided (the
//! timestamp is missing or not RFC 3339, the quantity is not a number) flags the record too:
//! stock whose age is unknown is not known to be fresh. Checks run after `where:` and the
//! contract, before ownership and mapping, on the runtime's clock (virtual in flow tests,
//! where a case sets it with `now:`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::filter::{Condition, ConditionConfig, FilterError, Verdict};

/// One named check of a flow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The check's name, reported as the dead letter's reason (for example `stock-stale`).
    pub name: String,
    /// What the check protects against, for the owner reading the dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The breach: when this condition holds for a record, the record is flagged.
    pub when: ConditionConfig,
}

/// A flow's compiled checks; the empty set flags nothing.
#[derive(Debug, Clone, Default)]
pub struct RecordChecks {
    checks: Vec<Check>,
}

#[derive(Debug, Clone)]
struct Check {
    name: String,
    condition: Condition,
}

/// A check a record breaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckBreach {
    /// The check's name.
    pub name: String,
    /// What was found, with the values compared.
    pub message: String,
}

/// A check that does not compile. Validation reports it with its line first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("check `{name}`: {source}")]
pub struct CheckError {
    /// The check's name.
    pub name: String,
    /// What is wrong with its condition.
    pub source: FilterError,
}

impl RecordChecks {
    /// Compiles a flow's `checks:`; `freshness` is the flow's `sla.freshness` (its duration
    /// and text), for `older_than: sla`.
    pub fn compile(
        configs: &[CheckConfig],
        freshness: Option<(Duration, &str)>,
    ) -> Result<Self, CheckError> {
        let checks = configs
            .iter()
            .map(|config| {
                Ok(Check {
                    name: config.name.clone(),
                    condition: Condition::compile(&config.when, freshness).map_err(|source| {
                        CheckError {
                            name: config.name.clone(),
                            source,
                        }
                    })?,
                })
            })
            .collect::<Result<Vec<_>, CheckError>>()?;
        Ok(Self { checks })
    }

    /// Whether the flow has no checks.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// The first check `record` breaches at `now_ms` (Unix milliseconds of the runtime's
    /// clock), if any.
    pub fn breach(&self, record: &Value, now_ms: i64) -> Option<CheckBreach> {
        self.checks.iter().find_map(|check| {
            let condition = &check.condition;
            let message = match condition.verdict(record, now_ms) {
                Verdict::Fails => return None,
                Verdict::Holds => {
                    let value = condition
                        .value_in(record)
                        .map(Value::to_string)
                        .unwrap_or_default();
                    let compared = match condition.other_in(record) {
                        Some((other, other_value)) => {
                            format!("{value} < {other_value} (`{other}`)")
                        }
                        None => format!("{value} at {}", clock_text(now_ms)),
                    };
                    format!(
                        "check `{}` failed: {}: {compared}",
                        check.name,
                        condition.describe()
                    )
                }
                Verdict::Undecidable(why) => format!(
                    "check `{}` failed: whether {} cannot be told ({why}), so the record is \
                     held back",
                    check.name,
                    condition.describe()
                ),
            };
            Some(CheckBreach {
                name: check.name.clone(),
                message,
            })
        })
    }

    /// Each check, described for `explain`.
    pub fn describe(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| format!("{} (check `{}`)", c.condition.describe(), c.name))
            .collect()
    }
}

/// The runtime's clock as an RFC 3339 time, for messages.
fn clock_text(now_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| format!("now {t}"))
        .unwrap_or_else(|_| format!("now {now_ms} ms"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 2026-11-27T12:00:00Z.
    const NOW: i64 = 1_795_780_800_000;

    fn stock_checks() -> RecordChecks {
        let configs: Vec<CheckConfig> = serde_json::from_value(json!([
            {"name": "stock-stale", "when": {"field": "stock_updated_at", "older_than": "sla"}},
            {"name": "oversold",
             "when": {"field": "quantity", "less_than_field": "open_order_quantity"}}
        ]))
        .unwrap();
        RecordChecks::compile(&configs, Some((Duration::from_secs(15 * 60), "15m"))).unwrap()
    }

    #[test]
    fn a_breach_names_the_check_and_the_values() {
        let checks = stock_checks();
        let fresh = json!({"stock_updated_at": "2026-11-27T11:50:00Z", "quantity": 5,
                           "open_order_quantity": 2});
        assert_eq!(checks.breach(&fresh, NOW), None);
        let stale = json!({"stock_updated_at": "2026-11-27T11:00:00Z", "quantity": 5,
                           "open_order_quantity": 2});
        assert_eq!(
            checks.breach(&stale, NOW),
            Some(CheckBreach {
                name: "stock-stale".into(),
                message: "check `stock-stale` failed: `stock_updated_at` is older than 15m (the \
                          flow's freshness SLA): \"2026-11-27T11:00:00Z\" at now \
                          2026-11-27T12:00:00Z"
                    .into()
            })
        );
        let oversold = json!({"stock_updated_at": "2026-11-27T11:59:00Z", "quantity": "1",
                              "open_order_quantity": 3});
        assert_eq!(
            checks.breach(&oversold, NOW).unwrap().message,
            "check `oversold` failed: `quantity` is less than `open_order_quantity`: \"1\" < 3 \
             (`open_order_quantity`)"
        );
        // The first breached check wins.
        let both = json!({"stock_updated_at": "2026-11-01T00:00:00Z", "quantity": 0,
                          "open_order_quantity": 3});
        assert_eq!(checks.breach(&both, NOW).unwrap().name, "stock-stale");
    }

    #[test]
    fn an_undecidable_check_holds_the_record_back() {
        let checks = stock_checks();
        let unknown_age = json!({"quantity": 5, "open_order_quantity": 2});
        let breach = checks.breach(&unknown_age, NOW).unwrap();
        assert_eq!(breach.name, "stock-stale");
        assert!(
            breach
                .message
                .contains("cannot be told (`stock_updated_at` is missing)"),
            "{}",
            breach.message
        );
        let bad_quantity = json!({"stock_updated_at": "2026-11-27T11:59:00Z", "quantity": "many",
                                  "open_order_quantity": 2});
        assert!(
            checks
                .breach(&bad_quantity, NOW)
                .unwrap()
                .message
                .contains("not a number")
        );
    }

    #[test]
    fn compile_errors_name_the_check() {
        let configs: Vec<CheckConfig> = serde_json::from_value(json!([
            {"name": "stock-stale", "when": {"field": "at", "older_than": "sla"}}
        ]))
        .unwrap();
        let err = RecordChecks::compile(&configs, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "check `stock-stale`: condition on `at`: `older_than: sla` needs the flow's \
             `sla.freshness`"
        );
    }
}
