//! Exchange rates: the one table a workspace converts money with, declared with its source
//! and date, never fetched behind anyone's back.
//!
//! ```yaml
//! exchange_rates:
//!   source: ECB euro foreign exchange reference rates
//!   date: 2026-11-27
//!   base: EUR
//!   rates: { GBP: "0.8412", JPY: "163.21", BHD: "0.4103" }   # units per 1 EUR
//! ```
//!
//! A conversion from the base multiplies by the table's rate; to the base, or between two
//! other currencies, it multiplies by the cross rate `rate(to) / rate(from)`, rounded half to
//! even to [`CROSS_RATE_DECIMALS`] decimals. The converted amount is the original times that
//! recorded rate, rounded half to even to the target's minor units, so anyone can redo the
//! sum from what the record carries. A pair the table cannot price is an error naming it.

use std::collections::HashMap;

use rust_decimal::{Decimal, RoundingStrategy};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Currency, Money, MoneyError, amount_of};

/// Decimals a cross rate (one not in the table as written) is rounded to before use.
pub const CROSS_RATE_DECIMALS: u32 = 10;

/// `exchange_rates:` in `switchyard.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRatesConfig {
    /// Where the rates come from, recorded on every converted amount (for example
    /// `ECB euro foreign exchange reference rates`).
    pub source: String,
    /// The day the rates are for, `YYYY-MM-DD`, recorded on every converted amount.
    pub date: String,
    /// The ISO 4217 code the rates are quoted against (`EUR`).
    pub base: String,
    /// Units of each currency per one unit of `base`, as exact decimals (`GBP: "0.8412"`).
    /// Write them as strings: a YAML number is read as a float first.
    pub rates: indexmap::IndexMap<String, Value>,
}

/// A validated rate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    source: String,
    date: String,
    base: Currency,
    rates: HashMap<&'static str, Decimal>,
}

/// What is wrong with a rate table: the key it is at (`base`, `date`, `rates/GBP`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exchange_rates.{key}: {message}")]
pub struct RateTableError {
    /// The key, `/`-separated below `exchange_rates`.
    pub key: String,
    /// What is wrong, with the fix.
    pub message: String,
}

/// One converted amount and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The amount as given, in its currency.
    pub original: Money,
    /// The amount converted, rounded half to even to its currency's minor units.
    pub converted: Money,
    /// The rate applied: units of the target per unit of the original currency.
    pub rate: Decimal,
}

impl RateTable {
    /// Validates a declared table; the first problem is returned with its key.
    pub fn from_config(config: &ExchangeRatesConfig) -> Result<Self, RateTableError> {
        Self::check(config).map_err(|mut problems| problems.remove(0))
    }

    /// Every problem of a declared table, each with its key (for diagnostics at their lines).
    pub fn check(config: &ExchangeRatesConfig) -> Result<Self, Vec<RateTableError>> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| {
            problems.push(RateTableError { key, message });
        };
        if config.source.trim().is_empty() {
            problem(
                "source".into(),
                "say where the rates come from (for example `ECB reference rates`): it is \
                 recorded on every converted amount"
                    .into(),
            );
        }
        if config.date.parse::<jiff::civil::Date>().is_err() {
            problem(
                "date".into(),
                format!(
                    "{:?} is not a date; write the day the rates are for as YYYY-MM-DD",
                    config.date
                ),
            );
        }
        let base = Currency::from_code(&config.base)
            .map_err(|err| problem("base".into(), err.to_string()))
            .ok();
        let mut rates = HashMap::new();
        for (code, value) in &config.rates {
            let key = format!("rates/{code}");
            let currency = match Currency::from_code(code) {
                Ok(currency) => currency,
                Err(err) => {
                    problem(key, err.to_string());
                    continue;
                }
            };
            match amount_of(value) {
                Ok(rate) if rate > Decimal::ZERO => {
                    if base.is_some_and(|b| b == currency) && rate != Decimal::ONE {
                        problem(
                            key,
                            format!("the base {code} is worth 1 {code}, not {rate}"),
                        );
                    } else {
                        rates.insert(currency.code(), rate.normalize());
                    }
                }
                Ok(rate) => problem(
                    key,
                    format!("a rate must be a positive decimal, not {rate}"),
                ),
                Err(err) => problem(key, format!("{err}; a rate is a positive decimal")),
            }
        }
        match base {
            Some(base) if problems.is_empty() => {
                rates.insert(base.code(), Decimal::ONE);
                Ok(Self {
                    source: config.source.clone(),
                    date: config.date.clone(),
                    base,
                    rates,
                })
            }
            _ => Err(problems),
        }
    }

    /// Where the rates come from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The day the rates are for.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The currency the rates are quoted against.
    pub fn base(&self) -> Currency {
        self.base
    }

    /// Units of `to` per unit of `from`, if the table prices both.
    pub fn rate(&self, from: Currency, to: Currency) -> Result<Decimal, MoneyError> {
        let no_rate = || MoneyError::NoRate {
            from: from.code(),
            to: to.code(),
            base: self.base.code(),
        };
        let from_rate = *self.rates.get(from.code()).ok_or_else(no_rate)?;
        let to_rate = *self.rates.get(to.code()).ok_or_else(no_rate)?;
        if from == to {
            return Ok(Decimal::ONE);
        }
        if from == self.base {
            return Ok(to_rate);
        }
        let cross = to_rate.checked_div(from_rate).ok_or_else(no_rate)?;
        Ok(cross
            .round_dp_with_strategy(CROSS_RATE_DECIMALS, RoundingStrategy::MidpointNearestEven)
            .normalize())
    }

    /// Converts `amount` (a JSON string or number) from `from` to `to`. The amount must fit
    /// `from`'s minor units; the result is rounded half to even to `to`'s.
    pub fn convert(
        &self,
        amount: &Value,
        from: Currency,
        to: Currency,
    ) -> Result<Conversion, MoneyError> {
        let original = Money::from_value(amount, from)?;
        let rate = self.rate(from, to)?;
        let converted = original.convert(rate, to)?;
        Ok(Conversion {
            original,
            converted,
            rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> ExchangeRatesConfig {
        serde_json::from_value(value).unwrap()
    }

    fn ecb() -> RateTable {
        RateTable::from_config(&config(json!({
            "source": "ECB reference rates", "date": "2026-11-27", "base": "EUR",
            "rates": {"GBP": "0.8412", "JPY": "163.21", "BHD": "0.4103", "USD": 1.0412}
        })))
        .unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn converts_with_the_table_and_says_which_rate() {
        let table = ecb();
        let c = table
            .convert(&json!("100.00"), cur("EUR"), cur("GBP"))
            .unwrap();
        assert_eq!(
            (
                c.original.to_string(),
                c.converted.to_string(),
                c.rate.to_string()
            ),
            ("100.00".into(), "84.12".into(), "0.8412".into())
        );
        // To the base: the cross rate 1 / 0.8412, to 10 decimals, recorded and applied.
        let c = table
            .convert(&json!("84.12"), cur("GBP"), cur("EUR"))
            .unwrap();
        assert_eq!(c.rate.to_string(), "1.1887779363");
        assert_eq!(c.converted.to_string(), "100.00");
        assert_eq!(
            (c.original.amount() * c.rate)
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven),
            c.converted.amount(),
            "the recorded rate reproduces the amount"
        );
        // Between two quoted currencies, into a 0- and a 3-decimal currency.
        let c = table.convert(&json!(1000), cur("JPY"), cur("BHD")).unwrap();
        assert_eq!(c.rate.to_string(), "0.0025139391");
        assert_eq!(c.converted.to_string(), "2.514");
        let c = table
            .convert(&json!("12.34"), cur("EUR"), cur("JPY"))
            .unwrap();
        assert_eq!(c.converted.to_string(), "2014");
        // The same currency converts at 1, without rounding anything.
        let c = table
            .convert(&json!("5.5"), cur("GBP"), cur("GBP"))
            .unwrap();
        assert_eq!(
            (c.rate, c.converted.to_string()),
            (Decimal::ONE, "5.50".into())
        );
    }

    #[test]
    fn conversion_rounds_half_to_even() {
        let table = RateTable::from_config(&config(json!({
            "source": "test", "date": "2026-11-27", "base": "EUR", "rates": {"USD": "1.5"}
        })))
        .unwrap();
        let usd = |amount: &str| {
            table
                .convert(&json!(amount), cur("EUR"), cur("USD"))
                .unwrap()
                .converted
                .to_string()
        };
        // 0.01 x 1.5 = 0.015 -> 0.02 (even); 0.03 x 1.5 = 0.045 -> 0.04 (even).
        assert_eq!(usd("0.01"), "0.02");
        assert_eq!(usd("0.03"), "0.04");
        assert_eq!(usd("-0.03"), "-0.04");
    }

    #[test]
    fn a_pair_without_a_rate_is_an_error_naming_it() {
        let err = ecb()
            .convert(&json!("1"), cur("EUR"), cur("CHF"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no exchange rate from EUR to CHF: the workspace's exchange_rates (base EUR) do not \
             quote both; add the missing one to the table"
        );
        let err = ecb()
            .convert(&json!("1.001"), cur("EUR"), cur("GBP"))
            .unwrap_err();
        assert!(
            matches!(err, MoneyError::TooManyFractionDigits { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_bad_table_is_refused_with_the_key_of_each_problem() {
        let problems = RateTable::check(&config(json!({
            "source": " ", "date": "27/11/2026", "base": "EUX",
            "rates": {"GBP": "0.8412", "GBX": "84.12", "JPY": "-1", "USD": "abc", "BHD": 0}
        })))
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "source",
                "date",
                "base",
                "rates/GBX",
                "rates/JPY",
                "rates/USD",
                "rates/BHD"
            ]
        );
        assert_eq!(
            problems[3].to_string(),
            "exchange_rates.rates/GBX: \"GBX\" is not an ISO 4217 currency code; write an active \
             three-letter code such as EUR, JPY or BHD"
        );
        assert_eq!(
            problems[4].message,
            "a rate must be a positive decimal, not -1"
        );
        let err = RateTable::from_config(&config(json!({
            "source": "s", "date": "2026-11-27", "base": "EUR", "rates": {"EUR": "2"}
        })))
        .unwrap_err();
        assert_eq!(err.key, "rates/EUR");
    }
}
