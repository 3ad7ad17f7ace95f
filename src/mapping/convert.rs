//! `convert:` fields: an amount converted into another currency with the workspace's declared
//! exchange rates, and nothing else. The output records where the number came from, so a
//! finance reader can redo it:
//!
//! ```yaml
//! amount_eur: { from: /amount, convert: { currency: /currency, to: EUR } }
//! # -> {"amount": "100.00", "currency": "EUR", "rate": "1.1887779363",
//! #     "rate_source": "ECB reference rates", "rate_date": "2026-11-27",
//! #     "original_amount": "84.12", "original_currency": "GBP"}
//! ```
//!
//! Amounts are written as exact decimal strings with their currency's exponent. A currency
//! the table does not quote, an amount with more fraction digits than its currency has, or a
//! currency code that is not ISO 4217 fails the record's mapping with a message naming it.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ConvertSpec, Pointer};
use crate::money::Currency;
use crate::money::rates::RateTable;

/// A compiled `convert:`.
#[derive(Debug, Clone)]
pub(super) struct Conversion {
    from: CurrencyOf,
    to: Currency,
    table: Arc<RateTable>,
}

#[derive(Debug, Clone)]
enum CurrencyOf {
    Field(Pointer),
    Fixed(Currency),
}

impl Conversion {
    /// Compiles a `convert:`; it needs the workspace's rate table, and a pair fixed in the
    /// spec must be priced by it.
    pub(super) fn compile(
        spec: &ConvertSpec,
        rates: Option<&Arc<RateTable>>,
    ) -> Result<Self, String> {
        let table = rates.ok_or_else(|| {
            "`convert` needs the workspace's `exchange_rates` (source, date, base, rates) in \
             switchyard.yaml; money is never converted at a rate nobody declared"
                .to_owned()
        })?;
        let to = Currency::from_code(&spec.to).map_err(|e| format!("convert.to: {e}"))?;
        let from = if spec.currency.starts_with('/') {
            CurrencyOf::Field(Pointer::parse(&spec.currency))
        } else {
            let from = Currency::from_code(&spec.currency)
                .map_err(|e| format!("convert.currency: {e}"))?;
            table.rate(from, to).map_err(|e| e.to_string())?;
            CurrencyOf::Fixed(from)
        };
        table.rate(table.base(), to).map_err(|e| e.to_string())?;
        Ok(Self {
            from,
            to,
            table: Arc::clone(table),
        })
    }

    /// Converts `amount`, reading its currency from `record` when the spec points at it.
    pub(super) fn apply(&self, amount: &Value, record: &Value) -> Result<Value, String> {
        let from = match &self.from {
            CurrencyOf::Fixed(currency) => *currency,
            CurrencyOf::Field(pointer) => {
                let code = pointer
                    .lookup(record)
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| format!("currency field `{pointer}` is missing"))?;
                Currency::from_value(code).map_err(|e| format!("`{pointer}`: {e}"))?
            }
        };
        let conversion = self
            .table
            .convert(amount, from, self.to)
            .map_err(|e| e.to_string())?;
        let mut out = Map::with_capacity(7);
        let text = |s: String| Value::String(s);
        out.insert("amount".into(), text(conversion.converted.to_string()));
        out.insert("currency".into(), text(self.to.code().to_owned()));
        out.insert("rate".into(), text(conversion.rate.to_string()));
        out.insert("rate_source".into(), text(self.table.source().to_owned()));
        out.insert("rate_date".into(), text(self.table.date().to_owned()));
        out.insert(
            "original_amount".into(),
            text(conversion.original.to_string()),
        );
        out.insert("original_currency".into(), text(from.code().to_owned()));
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;
    use serde_json::json;

    use super::*;
    use crate::mapping::{MapField, Mapping};
    use crate::money::rates::ExchangeRatesConfig;

    fn table() -> Arc<RateTable> {
        let config: ExchangeRatesConfig = serde_json::from_value(json!({
            "source": "ECB reference rates", "date": "2026-11-27", "base": "EUR",
            "rates": {"GBP": "0.8412", "JPY": "163.21", "BHD": "0.4103"}
        }))
        .unwrap();
        Arc::new(RateTable::from_config(&config).unwrap())
    }

    fn mapping(yaml: &str) -> Result<Mapping, String> {
        let map: IndexMap<String, MapField> = serde_saphyr::from_str(yaml).unwrap();
        Mapping::compile_with_rates(&map, Some(&table())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_output_records_the_rate_its_source_and_date() {
        let m = mapping(
            "id: \"{{id}}\"\n\
             amount_eur: { from: /amount, convert: { currency: /currency, to: EUR } }\n",
        )
        .unwrap();
        let out = m
            .apply(&json!({"id": "L-1", "amount": "84.12", "currency": "GBP"}))
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "L-1", "amount_eur": {
                "amount": "100.00", "currency": "EUR", "rate": "1.1887779363",
                "rate_source": "ECB reference rates", "rate_date": "2026-11-27",
                "original_amount": "84.12", "original_currency": "GBP"}})
        );
        // `encode` writes the same bytes.
        let mut bytes = Vec::new();
        m.encode(
            &json!({"id": "L-1", "amount": "84.12", "currency": "GBP"}),
            &mut bytes,
        )
        .unwrap();
        assert_eq!(bytes, serde_json::to_vec(&out).unwrap());
        let out = m
            .apply(&json!({"id": "L-2", "amount": 1000, "currency": "JPY"}))
            .unwrap();
        assert_eq!(out["amount_eur"]["amount"], "6.13");
        assert_eq!(out["amount_eur"]["original_amount"], "1000");
    }

    #[test]
    fn a_fixed_currency_and_a_three_decimal_target() {
        let m = mapping("fee_bhd: { from: /fee, convert: { currency: EUR, to: BHD } }").unwrap();
        let out = m.apply(&json!({"fee": "12.5"})).unwrap();
        assert_eq!(out["fee_bhd"]["amount"], "5.129");
        assert_eq!(out["fee_bhd"]["rate"], "0.4103");
        assert_eq!(out["fee_bhd"]["original_amount"], "12.50");
    }

    #[test]
    fn record_errors_name_the_pair_or_the_value() {
        let m = mapping("x: { from: /amount, convert: { currency: /currency, to: EUR } }").unwrap();
        let err = |record: Value| m.apply(&record).unwrap_err().to_string();
        assert_eq!(
            err(json!({"amount": "1", "currency": "CHF"})),
            "map.x: no exchange rate from CHF to EUR: the workspace's exchange_rates (base EUR) \
             do not quote both; add the missing one to the table"
        );
        assert!(err(json!({"amount": "1.001", "currency": "GBP"})).contains("refusing to round"));
        assert!(err(json!({"amount": "1", "currency": "EUX"})).contains("`/currency`: \"EUX\""));
        assert_eq!(
            err(json!({"amount": "1"})),
            "map.x: currency field `/currency` is missing"
        );
        assert_eq!(
            err(json!({"currency": "GBP"})),
            "map.x: field `/amount` is missing"
        );
    }

    #[test]
    fn compile_errors() {
        assert!(
            mapping("x: { from: /a, convert: { currency: EUR, to: CHF } }")
                .unwrap_err()
                .contains("no exchange rate from EUR to CHF")
        );
        assert!(
            mapping("x: { from: /a, convert: { currency: /c, to: EURO } }")
                .unwrap_err()
                .contains("convert.to: \"EURO\" is not an ISO 4217")
        );
        assert!(
            mapping("x: { template: \"{{a}}\", convert: { currency: /c, to: EUR } }")
                .unwrap_err()
                .contains("add `from:")
        );
        assert!(
            mapping("x: { from: /a, type: decimal, convert: { currency: /c, to: EUR } }")
                .unwrap_err()
                .contains("`type` does not apply")
        );
        let map: IndexMap<String, MapField> =
            serde_saphyr::from_str("x: { from: /a, convert: { currency: /c, to: EUR } }").unwrap();
        assert!(
            Mapping::compile(&map)
                .unwrap_err()
                .to_string()
                .contains("needs the workspace's `exchange_rates`")
        );
    }
}
