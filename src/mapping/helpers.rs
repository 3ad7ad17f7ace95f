//! The template helpers. Each is one function over JSON values; the native evaluator calls
//! it directly and Handlebars calls it through [`HandlebarsHelper`], so a template renders the
//! same whichever path runs it.

use std::borrow::Cow;
use std::str::FromStr;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::money::{self, Currency, Money};

/// Every helper a template may call, besides Handlebars' block helpers.
pub const HELPERS: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "minor_units",
    "major_units",
    "money",
    "currency_exponent",
    "decimal",
    "concat",
    "replace",
    "json",
    "coalesce",
    "len",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
];

/// A helper implementation: arguments in, one value out, or a message saying what is wrong.
/// Arguments are borrowed where they can be, so passing a field to a helper does not copy it.
pub(crate) type HelperFn = fn(&[Cow<'_, Value>]) -> Result<Value, String>;

/// Finds the implementation of a helper by name.
pub(crate) fn lookup(name: &str) -> Option<HelperFn> {
    Some(match name {
        "lower" => |args| Ok(Value::String(text(args, 0, "lower")?.to_lowercase())),
        "upper" => |args| Ok(Value::String(text(args, 0, "upper")?.to_uppercase())),
        "trim" => |args| Ok(Value::String(text(args, 0, "trim")?.trim().to_owned())),
        "minor_units" => minor_units,
        "major_units" => major_units,
        "money" => money,
        "currency_exponent" => |args| {
            let currency = Currency::from_value(arg(args, 0, "currency_exponent")?)
                .map_err(|e| e.to_string())?;
            Ok(Value::from(currency.exponent()))
        },
        "decimal" => decimal,
        "concat" => |args| Ok(Value::String(args.iter().map(|v| render(v)).collect())),
        "replace" => |args| {
            let subject = text(args, 0, "replace")?;
            let from = text(args, 1, "replace")?;
            let to = text(args, 2, "replace")?;
            Ok(Value::String(subject.replace(from.as_ref(), &to)))
        },
        "json" => |args| Ok(Value::String(arg(args, 0, "json")?.to_string())),
        "coalesce" => |args| {
            Ok(args
                .iter()
                .find(|v| !v.is_null())
                .map(|v| v.as_ref().clone())
                .unwrap_or(Value::Null))
        },
        "len" => |args| {
            let len = match arg(args, 0, "len")? {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                other => return Err(format!("len takes a string, array or object, not {other}")),
            };
            Ok(Value::from(len))
        },
        "eq" => |args| {
            Ok(Value::Bool(loose_eq(
                arg(args, 0, "eq")?,
                arg(args, 1, "eq")?,
            )))
        },
        "ne" => |args| {
            Ok(Value::Bool(!loose_eq(
                arg(args, 0, "ne")?,
                arg(args, 1, "ne")?,
            )))
        },
        "gt" => |args| compare(args, "gt", |o| o.is_gt()),
        "gte" => |args| compare(args, "gte", |o| o.is_ge()),
        "lt" => |args| compare(args, "lt", |o| o.is_lt()),
        "lte" => |args| compare(args, "lte", |o| o.is_le()),
        "and" => |args| {
            Ok(Value::Bool(
                !args.is_empty() && args.iter().all(|v| truthy(v)),
            ))
        },
        "or" => |args| Ok(Value::Bool(args.iter().any(|v| truthy(v)))),
        "not" => |args| Ok(Value::Bool(!truthy(arg(args, 0, "not")?))),
        _ => return None,
    })
}

/// Registers every helper with a Handlebars registry.
pub(crate) fn register_all(registry: &mut Handlebars<'static>) {
    for name in HELPERS {
        if let Some(function) = lookup(name) {
            registry.register_helper(name, Box::new(HandlebarsHelper { function }));
        }
    }
}

/// Renders a value as template text: strings as they are, `null` as nothing, numbers and
/// booleans as JSON, arrays and objects as compact JSON.
pub(crate) fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Handlebars' truthiness: `false`, `null`, `0`, `""` and `[]` are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// Parses a decimal amount from a JSON string or number, exactly.
pub(crate) fn parse_decimal(value: &Value) -> Result<Decimal, String> {
    match value {
        Value::String(s) => Decimal::from_str(s.trim())
            .or_else(|_| Decimal::from_scientific(s.trim()))
            .map_err(|_| format!("{s:?} is not a decimal amount")),
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::from_str(&text)
                .or_else(|_| Decimal::from_scientific(&text))
                .map_err(|_| format!("{text} is not a decimal amount"))
        }
        other => Err(format!("{other} is not a decimal amount")),
    }
}

struct HandlebarsHelper {
    function: HelperFn,
}

impl HelperDef for HandlebarsHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        helper: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut args = Vec::with_capacity(helper.params().len());
        for param in helper.params() {
            if param.is_value_missing() && helper.name() != "coalesce" {
                let name = param.relative_path().cloned().unwrap_or_default();
                return Err(RenderErrorReason::MissingVariable(Some(name)).into());
            }
            args.push(Cow::Borrowed(param.value()));
        }
        (self.function)(&args)
            .map(ScopedJson::Derived)
            .map_err(|message| RenderErrorReason::Other(message).into())
    }
}

fn arg<'a>(args: &'a [Cow<'_, Value>], index: usize, helper: &str) -> Result<&'a Value, String> {
    args.get(index)
        .map(AsRef::as_ref)
        .ok_or_else(|| format!("{helper} needs at least {} argument(s)", index + 1))
}

fn text<'a>(
    args: &'a [Cow<'_, Value>],
    index: usize,
    helper: &str,
) -> Result<Cow<'a, str>, String> {
    match arg(args, index, helper)? {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Null => Err(format!("{helper} got null where it needs text")),
        other => Ok(Cow::Owned(render(other))),
    }
}

/// `minor_units amount [exponent|currency]`: an amount in minor units (cents for EUR or
/// exponent 2, the default), as an integer. The second argument is an ISO 4217 code (`"JPY"`,
/// or a field holding one) or an exponent (`0`..`8`). Refuses amounts with more fraction digits
/// than that rather than rounding money silently.
fn minor_units(args: &[Cow<'_, Value>]) -> Result<Value, String> {
    let amount = money::amount_of(arg(args, 0, "minor_units")?).map_err(|e| e.to_string())?;
    let exponent = match args.get(1).map(AsRef::as_ref) {
        Some(Value::String(_)) | Some(Value::Null) => {
            return in_currency(amount, &args[1])?
                .to_minor()
                .map(Value::from)
                .map_err(|e| e.to_string());
        }
        Some(value) => exponent_of(value, "minor_units")?,
        None => 2,
    };
    let scaled = amount
        .checked_mul(Decimal::from(10_i64.pow(exponent)))
        .ok_or_else(|| format!("{amount} is out of range for minor units"))?;
    if !scaled.fract().is_zero() {
        return Err(format!(
            "{amount} has more than {exponent} fraction digits; refusing to round money: \
             correct the amount at its source"
        ));
    }
    let minor = i64::try_from(scaled.trunc())
        .map_err(|_| format!("{amount} is out of range for minor units"))?;
    Ok(Value::from(minor))
}

/// `major_units minor currency`: an integer amount of minor units as the exact decimal text of
/// the amount in `currency` (an ISO code or an exponent): `major_units 1995 "EUR"` is
/// `"19.95"`, `major_units 1995 "JPY"` is `"1995"`.
fn major_units(args: &[Cow<'_, Value>]) -> Result<Value, String> {
    let value = arg(args, 0, "major_units")?;
    let minor = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        format!("{value} is not a whole number of minor units; give an integer such as 1995")
    })?;
    let currency = arg(args, 1, "major_units")?;
    match currency {
        Value::Number(_) => {
            let exponent = exponent_of(currency, "major_units")?;
            Ok(Value::String(
                Decimal::from_i128_with_scale(i128::from(minor), exponent).to_string(),
            ))
        }
        _ => {
            let currency = Currency::from_value(currency).map_err(|e| e.to_string())?;
            Ok(Value::String(
                Money::from_minor(minor, currency).to_string(),
            ))
        }
    }
}

/// `money amount currency`: the amount as exact text with exactly the currency's fraction
/// digits (`money "12.3" "EUR"` is `"12.30"`, `money "1.5" "BHD"` is `"1.500"`); an amount
/// with more fraction digits than the currency has is refused, never rounded.
fn money(args: &[Cow<'_, Value>]) -> Result<Value, String> {
    let amount = money::amount_of(arg(args, 0, "money")?).map_err(|e| e.to_string())?;
    let currency = args
        .get(1)
        .ok_or_else(|| "money needs a currency: `money amount currency`".to_owned())?;
    Ok(Value::String(in_currency(amount, currency)?.to_string()))
}

/// `amount` in the currency a value names, refusing more fraction digits than it has.
fn in_currency(amount: Decimal, currency: &Value) -> Result<Money, String> {
    let currency = Currency::from_value(currency).map_err(|e| e.to_string())?;
    Money::new(amount, currency).map_err(|e| e.to_string())
}

/// A minor-unit exponent given as a number, `0`..`8`.
fn exponent_of(value: &Value, helper: &str) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|e| *e <= 8)
        .map(|e| e as u32)
        .ok_or_else(|| {
            format!("{helper}: the exponent must be 0..8 or an ISO 4217 code such as \"EUR\", not {value}")
        })
}

/// `decimal amount [scale]`: the amount as an exact decimal string, rounded half away from
/// zero to `scale` fraction digits when a scale is given.
fn decimal(args: &[Cow<'_, Value>]) -> Result<Value, String> {
    let mut amount = parse_decimal(arg(args, 0, "decimal")?)?;
    if let Some(scale) = args.get(1) {
        let scale = scale
            .as_u64()
            .filter(|s| *s <= 12)
            .ok_or_else(|| format!("decimal scale must be 0..12, not {scale}"))?;
        amount = amount.round_dp_with_strategy(
            scale as u32,
            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
        );
        amount.rescale(scale as u32);
    }
    Ok(Value::String(amount.to_string()))
}

/// Equality that treats `"11"` and `11` as different but `1` and `1.0` as equal.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(
    args: &[Cow<'_, Value>],
    helper: &str,
    accept: fn(std::cmp::Ordering) -> bool,
) -> Result<Value, String> {
    let (a, b) = (arg(args, 0, helper)?, arg(args, 1, helper)?);
    let ordering = match (a, b) {
        // Two amounts as text ("19.90", "9.5") order as amounts; other text (ISO dates, codes)
        // in its own order.
        (Value::String(x), Value::String(y)) => {
            match (
                x.parse::<rust_decimal::Decimal>(),
                y.parse::<rust_decimal::Decimal>(),
            ) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.cmp(y),
            }
        }
        // Integers order the same as integers as they do as decimals, without the parsing.
        (Value::Number(x), Value::Number(y)) if x.is_i64() && y.is_i64() => {
            x.as_i64().cmp(&y.as_i64())
        }
        _ => {
            let x = parse_decimal(a).map_err(|e| format!("{helper}: {e}"))?;
            let y = parse_decimal(b).map_err(|e| format!("{helper}: {e}"))?;
            x.cmp(&y)
        }
    };
    Ok(Value::Bool(accept(ordering)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(name: &str, args: &[Value]) -> Result<Value, String> {
        let args: Vec<Cow<'_, Value>> = args.iter().map(Cow::Borrowed).collect();
        lookup(name).expect("known helper")(&args)
    }

    #[test]
    fn every_listed_helper_has_an_implementation() {
        for name in HELPERS {
            assert!(lookup(name).is_some(), "{name} has no implementation");
        }
    }

    #[test]
    fn minor_units_is_exact() {
        assert_eq!(call("minor_units", &[json!("129.95")]), Ok(json!(12995)));
        assert_eq!(call("minor_units", &[json!("129.9")]), Ok(json!(12990)));
        assert_eq!(call("minor_units", &[json!("129")]), Ok(json!(12900)));
        assert_eq!(call("minor_units", &[json!(0.29)]), Ok(json!(29)));
        assert_eq!(call("minor_units", &[json!("5"), json!(0)]), Ok(json!(5)));
        assert!(call("minor_units", &[json!("1.005")]).is_err());
        assert!(call("minor_units", &[json!("abc")]).is_err());
        assert!(call("minor_units", &[Value::Null]).is_err());
    }

    #[test]
    fn minor_units_takes_a_currency_code_or_an_exponent() {
        let minor = |amount: Value, currency: Value| call("minor_units", &[amount, currency]);
        assert_eq!(minor(json!("129.95"), json!("EUR")), Ok(json!(12995)));
        assert_eq!(minor(json!("1200"), json!("JPY")), Ok(json!(1200)));
        assert_eq!(minor(json!("1.5"), json!("BHD")), Ok(json!(1500)));
        assert_eq!(minor(json!("0.0001"), json!("CLF")), Ok(json!(1)));
        assert_eq!(minor(json!("1.5"), json!(3)), Ok(json!(1500)));
        assert_eq!(
            minor(json!("12.345"), json!("EUR")),
            Err(
                "12.345 has more fraction digits than EUR has minor units (2); refusing to \
                 round money: correct the amount at its source"
                    .into()
            )
        );
        assert_eq!(
            minor(json!("5.5"), json!("JPY")).unwrap_err(),
            "5.5 has more fraction digits than JPY has minor units (0); refusing to round \
             money: correct the amount at its source"
        );
        assert_eq!(
            minor(json!("1"), json!("EUX")).unwrap_err(),
            "\"EUX\" is not an ISO 4217 currency code; write an active three-letter code such \
             as EUR, JPY or BHD"
        );
        assert!(minor(json!("1"), json!(9)).unwrap_err().contains("0..8"));
        assert!(minor(json!("1"), json!(null)).is_err());
        assert!(
            minor(json!("99999999999999999999"), json!("EUR"))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn major_units_money_and_currency_exponent() {
        assert_eq!(
            call("major_units", &[json!(1995), json!("EUR")]),
            Ok(json!("19.95"))
        );
        assert_eq!(
            call("major_units", &[json!(-5), json!("EUR")]),
            Ok(json!("-0.05"))
        );
        assert_eq!(
            call("major_units", &[json!("1995"), json!("JPY")]),
            Ok(json!("1995"))
        );
        assert_eq!(
            call("major_units", &[json!(1500), json!("KWD")]),
            Ok(json!("1.500"))
        );
        assert_eq!(
            call("major_units", &[json!(1500), json!(3)]),
            Ok(json!("1.500"))
        );
        assert!(
            call("major_units", &[json!("19.95"), json!("EUR")])
                .unwrap_err()
                .contains("not a whole number of minor units")
        );
        assert_eq!(
            call("money", &[json!("12.3"), json!("EUR")]),
            Ok(json!("12.30"))
        );
        assert_eq!(call("money", &[json!(7), json!("BHD")]), Ok(json!("7.000")));
        assert_eq!(
            call("money", &[json!("1200.00"), json!("KRW")]),
            Ok(json!("1200"))
        );
        assert!(
            call("money", &[json!("12.345"), json!("EUR")])
                .unwrap_err()
                .contains("refusing to round money")
        );
        assert!(
            call("money", &[json!("1")])
                .unwrap_err()
                .contains("needs a currency")
        );
        assert_eq!(call("currency_exponent", &[json!("CLF")]), Ok(json!(4)));
        assert_eq!(call("currency_exponent", &[json!("JPY")]), Ok(json!(0)));
        assert!(call("currency_exponent", &[json!("ZZZ")]).is_err());
    }

    #[test]
    fn comparisons_work_on_numbers_and_decimal_strings() {
        assert_eq!(call("gt", &[json!(3), json!(0)]), Ok(json!(true)));
        assert_eq!(call("gt", &[json!("0.5"), json!(0)]), Ok(json!(true)));
        assert_eq!(call("lte", &[json!(0), json!(0)]), Ok(json!(true)));
        // Amounts written as text order as amounts, whatever their scale or length.
        assert_eq!(
            call("lt", &[json!("19.9"), json!("19.90")]),
            Ok(json!(false))
        );
        assert_eq!(
            call("lte", &[json!("19.9"), json!("19.90")]),
            Ok(json!(true))
        );
        assert_eq!(call("gt", &[json!("10"), json!("9.5")]), Ok(json!(true)));
        // Other text keeps its own order (ISO dates).
        assert_eq!(
            call("lt", &[json!("2025-03-04"), json!("2025-11-01")]),
            Ok(json!(true))
        );
        assert_eq!(call("eq", &[json!("11"), json!("11")]), Ok(json!(true)));
        assert_eq!(call("eq", &[json!("11"), json!(11)]), Ok(json!(false)));
        assert_eq!(call("and", &[json!(true), json!(1)]), Ok(json!(true)));
        assert_eq!(call("or", &[json!(false), json!("")]), Ok(json!(false)));
    }

    #[test]
    fn text_helpers() {
        assert_eq!(call("lower", &[json!("SKU-Ab")]), Ok(json!("sku-ab")));
        assert_eq!(call("trim", &[json!("  Größe XL ")]), Ok(json!("Größe XL")));
        assert_eq!(
            call("concat", &[json!("a"), json!(1), json!(true)]),
            Ok(json!("a1true"))
        );
        assert_eq!(
            call("json", &[json!("say \"hi\"")]),
            Ok(json!("\"say \\\"hi\\\"\""))
        );
        assert_eq!(
            call("decimal", &[json!("2.345"), json!(2)]),
            Ok(json!("2.35"))
        );
        assert_eq!(call("decimal", &[json!(3), json!(2)]), Ok(json!("3.00")));
    }
}
