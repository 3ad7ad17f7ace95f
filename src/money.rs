//! Money: ISO 4217 currencies and exact amounts.
//!
//! An amount is a [`rust_decimal::Decimal`] tied to a [`Currency`], parsed from text or a JSON
//! number exactly (never through a float) and checked against the currency's minor units: an
//! amount with more significant fraction digits than its currency has (`12.345` EUR, `5.5`
//! JPY) is an error, never a silent rounding. Trailing zeros lose nothing and are accepted
//! (`12.340` EUR is 12.34 EUR). Formatting writes exactly the currency's exponent (`12.30`
//! EUR, `1200` JPY, `1.500` BHD). The one place money is rounded is an explicit conversion
//! ([`Money::convert`]), half to even, with a rate from the workspace's declared table
//! ([`rates`]), and the caller records the rate it used.
//!
//! This module owns the currency table and the amount type; it does no I/O and knows nothing
//! of mappings, contracts or specs, which call it.

pub mod rates;

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// An ISO 4217 currency with minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

/// An exact amount in a currency, with at most the currency's fraction digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

/// Why an amount or a currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The code is not an active ISO 4217 code.
    #[error(
        "{code:?} is not an ISO 4217 currency code; write an active three-letter code such as \
         EUR, JPY or BHD"
    )]
    UnknownCurrency {
        /// The code as given.
        code: String,
    },
    /// The code is an ISO 4217 code without minor units (precious metals, funds, testing).
    #[error(
        "{code} is an ISO 4217 code without minor units (a metal, fund or test code); money \
         amounts need a currency such as EUR"
    )]
    NoMinorUnits {
        /// The code.
        code: String,
    },
    /// The value is not a decimal amount.
    #[error("{value} is not a decimal amount; write it like \"12.34\"")]
    NotAnAmount {
        /// The value as given (JSON).
        value: String,
    },
    /// The amount has more significant fraction digits than its currency.
    #[error(
        "{amount} has more fraction digits than {currency} has minor units ({exponent}); \
         refusing to round money: correct the amount at its source"
    )]
    TooManyFractionDigits {
        /// The amount as parsed.
        amount: String,
        /// The currency.
        currency: &'static str,
        /// Its minor-unit exponent.
        exponent: u32,
    },
    /// The rate table does not price the pair.
    #[error(
        "no exchange rate from {from} to {to}: the workspace's exchange_rates (base {base}) do \
         not quote both; add the missing one to the table"
    )]
    NoRate {
        /// The currency converted from.
        from: &'static str,
        /// The currency converted to.
        to: &'static str,
        /// The table's base.
        base: &'static str,
    },
    /// The amount is too large for exact arithmetic (28 significant digits) or for 64-bit
    /// minor units.
    #[error("{value} is out of range for an exact amount ({limit})")]
    OutOfRange {
        /// The value as given.
        value: String,
        /// Which bound it passed.
        limit: &'static str,
    },
}

/// How a computed amount is rounded to its currency's minor units.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// Half to even (banker's rounding: 0.125 -> 0.12, 0.135 -> 0.14): rounding errors do not
    /// drift one way over many amounts. What conversions use.
    #[default]
    HalfEven,
    /// Half away from zero (commercial rounding: 0.125 -> 0.13, -0.125 -> -0.13), as most
    /// invoices and marketplace fee schedules round.
    HalfAwayFromZero,
}

impl Rounding {
    fn strategy(self) -> RoundingStrategy {
        match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfAwayFromZero => RoundingStrategy::MidpointAwayFromZero,
        }
    }
}

/// Every active ISO 4217 code with minor units (list one, 2025), with its exponent. Codes in
/// their transition period (ANG until XCG, ZWL until ZWG) stay while statements still carry
/// them. Sorted by code for a binary search.
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
    ("ZWL", 2),
];

/// ISO 4217 codes that exist but have no minor units: refused with their own message.
const WITHOUT_MINOR_UNITS: &[&str] = &[
    "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX",
];

/// The most fraction digits an amount may be written with before it is checked: enough for
/// any currency's exponent plus trailing zeros, and a bound on the work per value.
const MAX_AMOUNT_TEXT: usize = 64;

impl Currency {
    /// Looks up an ISO 4217 code (upper case, as ISO writes it).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        match CURRENCIES.binary_search_by(|(c, _)| (*c).cmp(code)) {
            Ok(index) => {
                let (code, exponent) = CURRENCIES[index];
                Ok(Self { code, exponent })
            }
            Err(_) if WITHOUT_MINOR_UNITS.contains(&code) => Err(MoneyError::NoMinorUnits {
                code: code.to_owned(),
            }),
            Err(_) => Err(MoneyError::UnknownCurrency {
                code: code.chars().take(16).collect(),
            }),
        }
    }

    /// Looks up the currency a JSON value names (a string code).
    pub fn from_value(value: &Value) -> Result<Self, MoneyError> {
        match value {
            Value::String(code) => Self::from_code(code),
            other => Err(MoneyError::UnknownCurrency {
                code: other.to_string().chars().take(16).collect(),
            }),
        }
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The number of fraction digits of its minor unit (JPY 0, EUR 2, BHD 3, CLF 4).
    pub fn exponent(self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Money {
    /// An exact amount in `currency`; refuses more significant fraction digits than the
    /// currency has.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let mut normalized = amount.normalize();
        if normalized.scale() > currency.exponent {
            return Err(MoneyError::TooManyFractionDigits {
                amount: normalized.to_string(),
                currency: currency.code,
                exponent: currency.exponent,
            });
        }
        normalized.rescale(currency.exponent);
        // `rescale` stops short when the digits would pass 28: such an amount cannot carry
        // its currency's exponent exactly.
        if normalized.scale() != currency.exponent {
            return Err(MoneyError::OutOfRange {
                value: amount.to_string(),
                limit: "at most 28 significant digits with the currency's fraction digits",
            });
        }
        Ok(Self {
            amount: normalized,
            currency,
        })
    }

    /// Parses an amount written as text (`"12.34"`, `"-5"`, `"1.2E3"`) in `currency`.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        Self::new(parse_amount(text)?, currency)
    }

    /// Parses an amount given as a JSON string or number in `currency`.
    pub fn from_value(value: &Value, currency: Currency) -> Result<Self, MoneyError> {
        Self::new(amount_of(value)?, currency)
    }

    /// The amount of `minor` minor units of `currency` (1995 EUR cents are 19.95 EUR).
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        // An i64 has 19 digits, a Decimal's mantissa 28: every minor amount fits exactly.
        Self {
            amount: Decimal::from_i128_with_scale(i128::from(minor), currency.exponent),
            currency,
        }
    }

    /// The amount in minor units (19.95 EUR is 1995), if it fits in 64 bits.
    pub fn to_minor(&self) -> Result<i64, MoneyError> {
        i64::try_from(self.amount.mantissa()).map_err(|_| MoneyError::OutOfRange {
            value: self.to_string(),
            limit: "minor units must fit in 64 bits",
        })
    }

    /// The exact amount, with the currency's exponent as its scale.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// This amount converted at `rate` (units of `to` per unit of this currency), rounded to
    /// `to`'s minor units half to even (banker's rounding: 0.125 -> 0.12, 0.135 -> 0.14), so
    /// rounding errors do not drift one way over many conversions.
    pub fn convert(&self, rate: Decimal, to: Currency) -> Result<Self, MoneyError> {
        let product = self
            .amount
            .checked_mul(rate)
            .ok_or_else(|| MoneyError::OutOfRange {
                value: format!("{self} x {rate}"),
                limit: "the converted amount has more than 28 significant digits",
            })?;
        Self::rounded(product, to, Rounding::HalfEven).map_err(|_| MoneyError::OutOfRange {
            value: format!("{self} x {rate}"),
            limit: "at most 28 significant digits with the currency's fraction digits",
        })
    }

    /// `value` rounded to `currency`'s minor units with `rounding`: the one way a computed
    /// amount (a conversion, a rate applied to a base) becomes money.
    pub fn rounded(
        value: Decimal,
        currency: Currency,
        rounding: Rounding,
    ) -> Result<Self, MoneyError> {
        let mut rounded = value.round_dp_with_strategy(currency.exponent, rounding.strategy());
        rounded.rescale(currency.exponent);
        if rounded.scale() != currency.exponent {
            return Err(MoneyError::OutOfRange {
                value: value.to_string(),
                limit: "at most 28 significant digits with the currency's fraction digits",
            });
        }
        Ok(Self {
            amount: rounded,
            currency,
        })
    }
}

impl fmt::Display for Money {
    /// The amount with exactly the currency's fraction digits, without the code
    /// (`12.30`, `1200`, `1.500`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.amount)
    }
}

/// Parses a decimal amount from a JSON string or number, exactly. JSON numbers arrive as the
/// shortest text that reads back as the same float (`0.1` is `"0.1"`); amounts beyond 15
/// significant digits should travel as strings.
pub fn amount_of(value: &Value) -> Result<Decimal, MoneyError> {
    match value {
        Value::String(text) => parse_amount(text),
        Value::Number(number) => parse_amount(&number.to_string()),
        other => Err(MoneyError::NotAnAmount {
            value: truncated(&other.to_string()),
        }),
    }
}

/// Parses a decimal amount from text: an optional sign, digits with an optional fraction,
/// and an optional exponent (`1.5E3`), surrounded by optional whitespace. Thousands
/// separators, currency symbols and `NaN` are refused.
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let trimmed = text.trim();
    let not_an_amount = || MoneyError::NotAnAmount {
        value: format!("{:?}", truncated(text)),
    };
    if trimmed.len() > MAX_AMOUNT_TEXT || !is_decimal_syntax(trimmed) {
        return Err(
            if trimmed.len() > MAX_AMOUNT_TEXT && is_decimal_syntax(trimmed) {
                MoneyError::OutOfRange {
                    value: truncated(trimmed),
                    limit: "at most 64 characters",
                }
            } else {
                not_an_amount()
            },
        );
    }
    let out_of_range = || MoneyError::OutOfRange {
        value: truncated(trimmed),
        limit: "at most 28 significant digits",
    };
    if trimmed.contains(['e', 'E']) {
        return Decimal::from_scientific(trimmed).map_err(|_| out_of_range());
    }
    // `from_str` rounds a fraction longer than 28 digits; `from_str_exact` refuses it.
    Decimal::from_str_exact(trimmed).map_err(|_| out_of_range())
}

/// `[+-]? digits ('.' digits?)? | [+-]? '.' digits`, then `([eE] [+-]? digits)?`.
fn is_decimal_syntax(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        at += 1;
    }
    let int_start = at;
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    let mut digits = at - int_start;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let fraction_start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        digits += at - fraction_start;
    }
    if digits == 0 {
        return false;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent_start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == exponent_start || at - exponent_start > 3 {
            return false;
        }
    }
    at == bytes.len()
}

/// Keeps error messages short whatever the input holds.
fn truncated(text: &str) -> String {
    const KEEP: usize = 40;
    if text.chars().count() <= KEEP {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(KEEP).collect::<String>())
    }
}

/// Checks what must hold of any text parsed as an amount of `currency`, for the fuzz target
/// and the tests: parsing never panics; an amount that parses formats with exactly the
/// currency's fraction digits, reads back as itself, and goes to minor units and back
/// unchanged when they fit; an amount that is refused for its fraction digits has more
/// significant ones than the currency allows.
pub fn check_roundtrip(text: &str, currency: Currency) -> Result<(), String> {
    let money = match Money::parse(text, currency) {
        Ok(money) => money,
        Err(MoneyError::TooManyFractionDigits { amount, .. }) => {
            let digits = amount.split_once('.').map_or(0, |(_, f)| f.len());
            return if digits > currency.exponent() as usize {
                Ok(())
            } else {
                Err(format!(
                    "{text:?} refused with {digits} fraction digits in {currency}"
                ))
            };
        }
        Err(_) => return Ok(()),
    };
    let shown = money.to_string();
    let digits = shown.split_once('.').map_or(0, |(_, f)| f.len());
    if digits != currency.exponent() as usize {
        return Err(format!("{text:?} formats as {shown} in {currency}"));
    }
    if Money::parse(&shown, currency).as_ref() != Ok(&money) {
        return Err(format!(
            "{text:?} formats as {shown}, which reads back differently"
        ));
    }
    if let Ok(minor) = money.to_minor()
        && Money::from_minor(minor, currency) != money
    {
        return Err(format!("{text:?}: {minor} minor units are not {shown}"));
    }
    Ok(())
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::from_code(code)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn the_table_is_sorted_unique_and_upper_case() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, exponent) in CURRENCIES {
            assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(*exponent <= 4);
            assert!(!WITHOUT_MINOR_UNITS.contains(code));
        }
        assert!(
            CURRENCIES.len() > 150,
            "all active codes: {}",
            CURRENCIES.len()
        );
    }

    #[test]
    fn every_exponent_class() {
        for code in ["JPY", "KRW", "CLP", "ISK", "VND", "XOF"] {
            assert_eq!(cur(code).exponent(), 0, "{code}");
        }
        for code in ["EUR", "GBP", "USD", "CHF", "SEK", "PLN"] {
            assert_eq!(cur(code).exponent(), 2, "{code}");
        }
        for code in ["BHD", "KWD", "OMR", "JOD", "TND", "IQD", "LYD"] {
            assert_eq!(cur(code).exponent(), 3, "{code}");
        }
        assert_eq!(cur("CLF").exponent(), 4);
        assert_eq!(cur("UYW").exponent(), 4);
    }

    #[test]
    fn amounts_format_with_exactly_the_exponent() {
        let cases = [
            ("12.3", "EUR", "12.30", 1230),
            ("12.340", "EUR", "12.34", 1234),
            ("-0.5", "GBP", "-0.50", -50),
            ("1200", "JPY", "1200", 1200),
            ("1200.00", "JPY", "1200", 1200),
            ("1.5", "BHD", "1.500", 1500),
            ("0.001", "KWD", "0.001", 1),
            ("12.3456", "CLF", "12.3456", 123_456),
            ("1.5E3", "EUR", "1500.00", 150_000),
            (" 7 ", "USD", "7.00", 700),
            ("+3.", "USD", "3.00", 300),
            (".25", "USD", "0.25", 25),
        ];
        for (text, code, shown, minor) in cases {
            let money = Money::parse(text, cur(code)).unwrap();
            assert_eq!(money.to_string(), shown, "{text} {code}");
            assert_eq!(money.to_minor(), Ok(minor), "{text} {code}");
            assert_eq!(Money::from_minor(minor, cur(code)), money, "{text} {code}");
        }
    }

    #[test]
    fn too_many_fraction_digits_is_refused_never_rounded() {
        for (text, code) in [
            ("12.345", "EUR"),
            ("5.5", "JPY"),
            ("0.1", "KRW"),
            ("1.0005", "BHD"),
            ("0.00001", "CLF"),
        ] {
            let err = Money::parse(text, cur(code)).unwrap_err();
            assert!(
                matches!(err, MoneyError::TooManyFractionDigits { .. }),
                "{text} {code}: {err}"
            );
        }
        let err = Money::parse("12.345", cur("EUR")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "12.345 has more fraction digits than EUR has minor units (2); refusing to round \
             money: correct the amount at its source"
        );
    }

    #[test]
    fn json_numbers_and_strings_parse_exactly() {
        assert_eq!(
            Money::from_value(&json!(0.29), cur("EUR"))
                .unwrap()
                .to_minor(),
            Ok(29)
        );
        assert_eq!(
            Money::from_value(&json!(0.1), cur("EUR"))
                .unwrap()
                .to_string(),
            "0.10"
        );
        assert_eq!(
            Money::from_value(&json!(1e3), cur("JPY"))
                .unwrap()
                .to_string(),
            "1000"
        );
        assert_eq!(
            Money::from_value(&json!("19.99"), cur("USD"))
                .unwrap()
                .to_minor(),
            Ok(1999)
        );
        for bad in [
            json!(null),
            json!(true),
            json!([1]),
            json!("abc"),
            json!("1,50"),
        ] {
            assert!(
                matches!(
                    Money::from_value(&bad, cur("EUR")),
                    Err(MoneyError::NotAnAmount { .. })
                ),
                "{bad}"
            );
        }
        for bad in [
            "", "-", ".", "1.2.3", "NaN", "inf", "1e", "1e1234", "€5", "0x10", "1 000",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_codes_are_named() {
        let err = Currency::from_code("EUX").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"EUX\" is not an ISO 4217 currency code; write an active three-letter code such \
             as EUR, JPY or BHD"
        );
        assert!(Currency::from_code("eur").is_err(), "codes are upper case");
        assert!(Currency::from_code("HRK").is_err(), "withdrawn in 2023");
        assert!(matches!(
            Currency::from_code("XAU"),
            Err(MoneyError::NoMinorUnits { .. })
        ));
        assert!(Currency::from_value(&json!(978)).is_err());
    }

    #[test]
    fn huge_values_are_out_of_range_not_wrong() {
        // 28 significant digits are exact.
        let big = "9999999999999999999999999.99";
        assert_eq!(Money::parse(big, cur("EUR")).unwrap().to_string(), big);
        // Past 64-bit minor units: the amount is exact, its minor units are refused.
        assert!(matches!(
            Money::parse(big, cur("EUR")).unwrap().to_minor(),
            Err(MoneyError::OutOfRange { .. })
        ));
        let max = Money::from_minor(i64::MAX, cur("EUR"));
        assert_eq!(max.to_string(), "92233720368547758.07");
        assert_eq!(max.to_minor(), Ok(i64::MAX));
        assert_eq!(
            Money::from_minor(i64::MIN, cur("JPY")).to_minor(),
            Ok(i64::MIN)
        );
        // More digits than exact arithmetic holds: refused, never rounded.
        for text in [
            "123456789012345678901234567890",
            "0.12345678901234567890123456789",
            &"9".repeat(100),
        ] {
            assert!(
                matches!(parse_amount(text), Err(MoneyError::OutOfRange { .. })),
                "{text}: {:?}",
                parse_amount(text)
            );
        }
    }

    #[test]
    fn random_amounts_round_trip_in_every_exponent_class() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        const PIECES: &[&str] = &[
            "0",
            "1",
            "5",
            "9",
            "00",
            "12",
            "999",
            ".",
            "-",
            "+",
            "e",
            "E",
            "3",
            " ",
            "x",
            ",",
            "0000000000",
            "9999999999",
        ];
        let currencies = ["JPY", "EUR", "BHD", "CLF"].map(cur);
        let mut parsed = 0;
        for _ in 0..20_000 {
            let text: String = (0..next(8) + 1)
                .map(|_| PIECES[next(PIECES.len())])
                .collect();
            for currency in currencies {
                if let Err(problem) = check_roundtrip(&text, currency) {
                    panic!("{problem}");
                }
                parsed += usize::from(Money::parse(&text, currency).is_ok());
            }
        }
        assert!(parsed > 5_000, "only {parsed} amounts parsed");
    }

    #[test]
    fn conversion_rounds_half_to_even_to_the_target_exponent() {
        let eur = cur("EUR");
        let rate = |r: &str| Decimal::from_str(r).unwrap();
        let gbp = Money::parse("100.00", eur)
            .unwrap()
            .convert(rate("0.8412"), cur("GBP"))
            .unwrap();
        assert_eq!(
            (gbp.to_string(), gbp.currency().code()),
            ("84.12".into(), "GBP")
        );
        let jpy = Money::parse("10.00", eur)
            .unwrap()
            .convert(rate("163.21"), cur("JPY"))
            .unwrap();
        assert_eq!(jpy.to_string(), "1632");
        // Exactly half a minor unit goes to the even neighbour.
        let half = |amount: &str| {
            Money::parse(amount, cur("BHD"))
                .unwrap()
                .convert(rate("0.5"), eur)
                .unwrap()
                .to_string()
        };
        assert_eq!(half("0.025"), "0.01");
        assert_eq!(half("0.035"), "0.02");
        assert_eq!(half("-0.025"), "-0.01");
        let bhd = Money::parse("1.00", eur)
            .unwrap()
            .convert(rate("0.41234"), cur("BHD"))
            .unwrap();
        assert_eq!(bhd.to_string(), "0.412");
    }

    #[test]
    fn rounding_to_minor_units_half_even_or_away_from_zero() {
        let value = |v: &str| Decimal::from_str(v).unwrap();
        let round = |v: &str, code: &str, rounding| {
            Money::rounded(value(v), cur(code), rounding)
                .unwrap()
                .to_string()
        };
        assert_eq!(round("10.785", "EUR", Rounding::HalfEven), "10.78");
        assert_eq!(round("10.785", "EUR", Rounding::HalfAwayFromZero), "10.79");
        assert_eq!(
            round("-10.785", "EUR", Rounding::HalfAwayFromZero),
            "-10.79"
        );
        assert_eq!(round("597.6", "JPY", Rounding::HalfEven), "598");
        assert_eq!(round("1.4815", "BHD", Rounding::HalfAwayFromZero), "1.482");
        assert_eq!(round("24", "EUR", Rounding::HalfEven), "24.00");
    }
}
