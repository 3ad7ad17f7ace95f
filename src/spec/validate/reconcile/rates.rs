//! Checks of a reconcile flow's contracted rates (`reconcile.rates`): the pointers, the rate
//! table (decimal fractions from 0 to 1), the tolerance (per ISO 4217 code, since the
//! contracted amount is rounded to the currency's minor units), and their resolution into
//! [`RateCheck`]s. No I/O.

use rust_decimal::Decimal;

use super::super::{At, Report, seg};
use super::{pointer, tolerance};
use crate::reconcile::plan::RateCheck;
use crate::reconcile::{RateConfig, ReconcileConfig};
use crate::spec::diagnostic::Code;

/// Checks every declared rate; returns them resolved (meaningful only without errors).
pub(super) fn check(
    config: &ReconcileConfig,
    at: &At<'_>,
    report: &mut Report<'_>,
) -> Vec<RateCheck> {
    config
        .rates
        .iter()
        .map(|(name, rate)| check_one(name, rate, at, report))
        .collect()
}

fn check_one(name: &str, rate: &RateConfig, at: &At<'_>, report: &mut Report<'_>) -> RateCheck {
    let base = format!("/reconcile/rates/{}", seg(name));
    pointer(
        &rate.charged.field,
        &format!("{base}/charged/field"),
        at,
        report,
    );
    pointer(&rate.base.field, &format!("{base}/base/field"), at, report);
    pointer(&rate.per, &format!("{base}/per"), at, report);
    if let Some(by) = &rate.by {
        pointer(by, &format!("{base}/by"), at, report);
    }
    if rate.charged.field == rate.base.field && rate.charged.equals == rate.base.equals {
        report.push(
            at.key_error(
                &format!("{base}/base"),
                Code::InvalidReconcile,
                format!(
                    "rate \"{name}\" charges the lines it is based on: a line cannot be charged \
                     on itself"
                ),
            )
            .with_hint(Some(
                "name the charged lines (`charged: { field: /type, equals: COMMISSION_FEE }`) and \
                 the lines they are a rate of (`base: { field: /type, equals: ORDER_AMOUNT }`)"
                    .into(),
            )),
        );
    }
    if rate.contracted.is_empty() && rate.default.is_none() {
        report.push(
            at.key_error(
                &base,
                Code::InvalidReconcile,
                format!("rate \"{name}\" contracts no rate: every line it charges would breach it"),
            )
            .with_hint(Some(
                "declare `default: \"0.12\"`, or `by:` and the `contracted:` rate per value".into(),
            )),
        );
    }
    if !rate.contracted.is_empty() && rate.by.is_none() {
        report.push(
            at.key_error(
                &format!("{base}/contracted"),
                Code::InvalidReconcile,
                "contracted rates are chosen by the value of `by`, and `by` is not declared",
            )
            .with_hint(Some(
                "add `by:` naming the statement field the table is keyed by, such as /shop_id"
                    .into(),
            )),
        );
    }
    let mut contracted = indexmap::IndexMap::new();
    for (value, text) in &rate.contracted {
        let at_pointer = format!("{base}/contracted/{}", seg(value));
        if let Some(rate) = fraction(text, &at_pointer, at, report) {
            contracted.insert(value.clone(), rate);
        }
    }
    let default = rate
        .default
        .as_deref()
        .and_then(|text| fraction(text, &format!("{base}/default"), at, report));
    RateCheck {
        name: name.to_owned(),
        description: rate.description.clone(),
        charged: (rate.charged.field.clone(), rate.charged.equals.clone()),
        base: (rate.base.field.clone(), rate.base.equals.clone()),
        per: rate.per.clone(),
        by: rate.by.clone(),
        contracted,
        default,
        sign: rate.sign,
        rounding: rate.rounding,
        tolerance: tolerance(
            &rate.tolerance,
            &format!("{base}/tolerance"),
            true,
            at,
            report,
        ),
    }
}

/// A rate: a decimal fraction from 0 to 1.
fn fraction(text: &str, at_pointer: &str, at: &At<'_>, report: &mut Report<'_>) -> Option<Decimal> {
    let hint = "write the rate as a quoted decimal fraction: 12 % is \"0.12\"";
    match crate::money::parse_amount(text) {
        Ok(rate) if rate >= Decimal::ZERO && rate <= Decimal::ONE => Some(rate.normalize()),
        Ok(rate) => {
            report.push(
                at.error(
                    at_pointer,
                    Code::InvalidReconcile,
                    format!("a contracted rate is a fraction from 0 to 1, not {rate}"),
                )
                .with_hint(Some(hint.into())),
            );
            None
        }
        Err(_) => {
            report.push(
                at.error(
                    at_pointer,
                    Code::InvalidReconcile,
                    format!("{text:?} is not a decimal rate"),
                )
                .with_hint(Some(hint.into())),
            );
            None
        }
    }
}
