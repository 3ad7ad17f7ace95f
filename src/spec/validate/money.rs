//! Checks of money in a workspace: the exchange-rate table (ISO codes, positive decimal rates,
//! a date and a source, each reported at its line) and the `convert:` fields of a flow's map
//! (a table to convert with, ISO codes, and a rate for a pair the spec fixes).

use indexmap::IndexMap;

use super::workspace::Checked;
use super::{At, Report, seg};
use crate::mapping::MapField;
use crate::money::Currency;
use crate::money::rates::{ExchangeRatesConfig, RateTable};
use crate::spec::diagnostic::Code;

/// Reports every problem of the workspace's `exchange_rates`, at its key.
pub(crate) fn check_rate_table(rates: &ExchangeRatesConfig, at: &At<'_>, report: &mut Report<'_>) {
    let Err(problems) = RateTable::check(rates) else {
        return;
    };
    for problem in problems {
        let pointer = match problem.key.strip_prefix("rates/") {
            Some(code) => format!("/exchange_rates/rates/{}", seg(code)),
            None => format!("/exchange_rates/{}", problem.key),
        };
        // A bad currency code is the key itself; a bad rate is its value.
        let diagnostic =
            if problem.key.starts_with("rates/") && problem.message.contains("ISO 4217") {
                at.key_error(&pointer, Code::InvalidValue, problem.message)
            } else {
                at.error(&pointer, Code::InvalidValue, problem.message)
            };
        report.push(diagnostic.with_hint(Some(
            "exchange_rates: { source: ..., date: YYYY-MM-DD, base: EUR, rates: { GBP: \"0.8412\" } } \
             (units per one unit of base; see docs/money.md)"
                .into(),
        )));
    }
}

/// Reports every `convert:` field of `map` (and of its `each` item maps) that cannot work.
pub(crate) fn check_conversions(
    map: &IndexMap<String, MapField>,
    base: &str,
    workspace: &Checked,
    at: &At<'_>,
    report: &mut Report<'_>,
) {
    for (name, field) in map {
        let MapField::Detailed(detail) = field else {
            continue;
        };
        let base = format!("{base}/{}", seg(name));
        if let Some(items) = &detail.map {
            check_conversions(items, &format!("{base}/map"), workspace, at, report);
        }
        let Some(convert) = &detail.convert else {
            continue;
        };
        let pointer = format!("{base}/convert");
        let to = Currency::from_code(&convert.to)
            .map_err(|err| {
                report.push(at.error(
                    &format!("{pointer}/to"),
                    Code::InvalidValue,
                    err.to_string(),
                ));
            })
            .ok();
        let from = if convert.currency.starts_with('/') {
            None
        } else {
            Currency::from_code(&convert.currency)
                .map_err(|err| {
                    report.push(
                        at.error(
                            &format!("{pointer}/currency"),
                            Code::InvalidValue,
                            err.to_string(),
                        )
                        .with_hint(Some(
                            "give an ISO 4217 code, or a JSON Pointer such as `/currency` to \
                                 the field holding it"
                                .into(),
                        )),
                    );
                })
                .ok()
        };
        let Some(config) = &workspace.spec.exchange_rates else {
            report.push(
                at.key_error(
                    &pointer,
                    Code::InvalidValue,
                    "`convert` needs the workspace's `exchange_rates`: money is never converted \
                     at a rate nobody declared"
                        .to_owned(),
                )
                .with_hint(Some(
                    "declare exchange_rates: { source, date, base, rates } in switchyard.yaml \
                     (see docs/money.md)"
                        .into(),
                )),
            );
            continue;
        };
        // A table with problems was reported at its own lines.
        let Ok(table) = RateTable::check(config) else {
            continue;
        };
        if let Some(to) = to {
            let from = from.unwrap_or(table.base());
            if let Err(err) = table.rate(from, to) {
                report.push(at.error(&pointer, Code::InvalidValue, err.to_string()));
            }
        }
    }
}
