//! Contracted rates and line dates on small hand-made sides: a commission at another rate
//! names the rate that failed (and replaces the amount mismatch the same defect shows against
//! a ledger that posted the contracted amount), rounding to each currency's minor units, the
//! tolerance, lines in any order; unmatched lines carry their dates and cycles their span.

use std::str::FromStr;

use indexmap::IndexMap;
use rust_decimal::Decimal;

use super::matcher::{Kind, Matched, Variance};
use super::plan::{LineDates, RateCheck, RateSign, ReconcilePlan, Strategy, Tolerance};
use super::tests::{Line, kinds, plan, run, run_cycle};
use crate::money::Rounding;
use crate::reconcile::amount::Amount;

/// Statement lines here are: key, cycle, amount, currency, type (read once for `charged` and
/// `base`), order line, shop.
fn commission(default: Option<&str>, contracted: &[(&str, &str)]) -> RateCheck {
    RateCheck {
        name: "commission-rate".into(),
        description: None,
        charged: ("/type".into(), "COMMISSION_FEE".into()),
        base: ("/type".into(), "ORDER_AMOUNT".into()),
        per: "/order_line_id".into(),
        by: Some("/shop_id".into()),
        contracted: contracted
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Decimal::from_str(v).unwrap()))
            .collect::<IndexMap<_, _>>(),
        default: default.map(|d| Decimal::from_str(d).unwrap()),
        sign: RateSign::Opposite,
        rounding: Rounding::HalfAwayFromZero,
        tolerance: Tolerance::default(),
    }
}

fn with_rate(rate: RateCheck) -> ReconcilePlan {
    let mut plan = plan(Strategy::OneToOne);
    plan.rates.push(rate);
    plan
}

/// A statement line of the rate layout.
fn st<'a>(
    tid: &'a str,
    amount: &'a str,
    currency: &'a str,
    kind: &'a str,
    order_line: Option<&'a str>,
    shop: &'a str,
) -> Vec<Option<&'a str>> {
    vec![
        Some(tid),
        Some("C1"),
        Some(amount),
        Some(currency),
        Some(kind),
        order_line,
        Some(shop),
    ]
}

/// The ledger posting each statement line at its own amount, but `overrides`.
fn posted<'a>(
    statement: &[Vec<Option<&'a str>>],
    overrides: &[(&str, &'a str)],
) -> Vec<Vec<Option<&'a str>>> {
    statement
        .iter()
        .map(|line| {
            let tid = line[0].unwrap_or_default();
            let amount = overrides
                .iter()
                .find(|(t, _)| *t == tid)
                .map_or(line[2], |(_, a)| Some(*a));
            vec![line[0], line[1], amount, line[3], line[0]]
        })
        .collect()
}

fn lines<'a>(owned: &'a [Vec<Option<&'a str>>]) -> Vec<Line<'a>> {
    owned.iter().map(Vec::as_slice).collect()
}

fn reconcile(
    rate: RateCheck,
    statement: &[Vec<Option<&str>>],
    overrides: &[(&str, &str)],
) -> Matched {
    let ledger = posted(statement, overrides);
    run(with_rate(rate), &lines(&ledger), &lines(statement))
}

fn found<'m>(matched: &'m Matched, kind: Kind, reference: &str) -> &'m Variance {
    matched
        .variances
        .iter()
        .find(|v| v.kind == kind && v.reference() == reference)
        .unwrap_or_else(|| panic!("no {kind:?} {reference}: {:?}", kinds(matched)))
}

fn text(amount: Option<Amount>) -> Option<String> {
    amount.map(|a| a.to_string())
}

fn statement() -> Vec<Vec<Option<&'static str>>> {
    vec![
        st("T1", "200.00", "EUR", "ORDER_AMOUNT", Some("O1"), "S1"),
        st("T2", "-30.00", "EUR", "COMMISSION_FEE", Some("O1"), "S1"),
        st("T3", "100.00", "EUR", "ORDER_AMOUNT", Some("O2"), "S2"),
        st("T4", "-10.00", "EUR", "COMMISSION_FEE", Some("O2"), "S2"),
        st("T5", "4980", "JPY", "ORDER_AMOUNT", Some("O3"), "S1"),
        st("T6", "-598", "JPY", "COMMISSION_FEE", Some("O3"), "S1"),
        st("T7", "12.345", "BHD", "ORDER_AMOUNT", Some("O4"), "S1"),
        st("T8", "-1.481", "BHD", "COMMISSION_FEE", Some("O4"), "S1"),
        st("T9", "-85.00", "EUR", "PAYMENT", None, "S1"),
    ]
}

#[test]
fn a_commission_at_another_rate_is_a_rate_mismatch_naming_the_rate() {
    // Finance posted the contracted -24.00 where the statement charged 15 %: the ledger and
    // the statement differ by 6.00, and that one defect is reported once, as the rate.
    let rate = commission(Some("0.12"), &[("S2", "0.10")]);
    let matched = reconcile(rate, &statement(), &[("T2", "-24.00")]);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::RateMismatch, "T2".into(), Some("6.00".into()))]
    );
    let v = found(&matched, Kind::RateMismatch, "T2");
    assert_eq!(v.rule.as_deref(), Some("commission-rate"));
    assert_eq!(text(v.expected_amount), Some("-24.00".into()));
    assert_eq!(text(v.statement_amount), Some("-30.00".into()));
    assert_eq!(text(v.ledger_amount), Some("-24.00".into()));
    assert_eq!(v.journal_id.as_deref(), Some("T2"));
    assert_eq!(v.billing_cycle_id, "C1");
    assert_eq!(v.currency, "EUR");
    assert_eq!(
        v.detail,
        "rate commission-rate: order_line_id O1 was charged -30.00 EUR on 200.00 EUR (a rate \
         of 0.15); the contracted rate by default is 0.12, which is -24.00 EUR; the ledger \
         posted the contracted amount"
    );
    assert_eq!(v.kind.failure().as_str(), "reconciliation-variance");
    let json = serde_json::to_value(v).unwrap();
    assert_eq!(json["kind"], "rate_mismatch");
    assert_eq!(json["expected_amount"], "-24.00");
}

#[test]
fn the_ledger_and_the_rate_are_judged_apart() {
    // Posted as charged: the ledger agrees with the statement; only the rate is wrong.
    let rate = || commission(Some("0.12"), &[("S2", "0.10")]);
    let matched = reconcile(rate(), &statement(), &[]);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::RateMismatch, "T2".into(), Some("6.00".into()))]
    );
    assert!(
        !found(&matched, Kind::RateMismatch, "T2")
            .detail
            .contains("ledger posted")
    );
    // Posted at neither: two defects, two variances.
    let matched = reconcile(rate(), &statement(), &[("T2", "-27.00")]);
    assert_eq!(
        kinds(&matched),
        vec![
            (Kind::AmountMismatch, "T2".into(), Some("3.00".into())),
            (Kind::RateMismatch, "T2".into(), Some("6.00".into())),
        ]
    );
    // A flow without rates sees only the ledger.
    let ledger = posted(&statement(), &[("T2", "-24.00")]);
    let matched = run(
        plan(Strategy::OneToOne),
        &lines(&ledger),
        &lines(&statement()),
    );
    assert_eq!(
        kinds(&matched),
        vec![(Kind::AmountMismatch, "T2".into(), Some("6.00".into()))]
    );
}

#[test]
fn lines_in_any_order_give_the_same_variances() {
    let rate = || commission(Some("0.12"), &[("S2", "0.10")]);
    let forward = reconcile(rate(), &statement(), &[("T2", "-24.00")]);
    let mut reversed = statement();
    reversed.reverse();
    let backward = reconcile(rate(), &reversed, &[("T2", "-24.00")]);
    let details =
        |m: &Matched| -> Vec<String> { m.variances.iter().map(|v| v.detail.clone()).collect() };
    assert_eq!(kinds(&forward), kinds(&backward));
    assert_eq!(details(&forward), details(&backward));
}

#[test]
fn the_contracted_amount_is_rounded_to_the_currency_with_the_declared_rounding() {
    // 15 % of 10.30 is 1.545: half away from zero 1.55, half to even 1.54.
    let lines = vec![
        st("T1", "10.30", "EUR", "ORDER_AMOUNT", Some("O1"), "S3"),
        st("T2", "-1.55", "EUR", "COMMISSION_FEE", Some("O1"), "S3"),
    ];
    let away = commission(None, &[("S3", "0.15")]);
    assert!(reconcile(away.clone(), &lines, &[]).variances.is_empty());
    let even = RateCheck {
        rounding: Rounding::HalfEven,
        ..away.clone()
    };
    let matched = reconcile(even.clone(), &lines, &[]);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::RateMismatch, "T2".into(), Some("0.01".into()))]
    );
    assert_eq!(
        text(found(&matched, Kind::RateMismatch, "T2").expected_amount),
        Some("-1.54".into())
    );
    // A tolerance of a cent accepts it; one in another currency does not.
    let mut tolerant = even.clone();
    tolerant
        .tolerance
        .by_currency
        .insert("EUR".into(), Amount::parse("0.01").unwrap());
    assert!(reconcile(tolerant, &lines, &[]).variances.is_empty());
    let mut elsewhere = even;
    elsewhere
        .tolerance
        .by_currency
        .insert("JPY".into(), Amount::parse("1").unwrap());
    assert_eq!(reconcile(elsewhere, &lines, &[]).variances.len(), 1);
    // JPY has no minor unit, BHD three: 12 % of 4980 is 597.6 -> 598; of 12.345, 1.4814 ->
    // 1.481 (the statement above charges exactly those).
    let matched = reconcile(commission(Some("0.12"), &[]), &statement()[4..8], &[]);
    assert!(matched.variances.is_empty(), "{:?}", kinds(&matched));
}

#[test]
fn a_rate_that_cannot_be_checked_is_a_variance_without_a_difference() {
    let lines = vec![
        // No order amount for O8.
        st("T1", "-5.00", "EUR", "COMMISSION_FEE", Some("O8"), "S1"),
        // No order line at all.
        st("T2", "-5.00", "EUR", "COMMISSION_FEE", None, "S1"),
        // Order in EUR, commission in GBP.
        st("T3", "100.00", "EUR", "ORDER_AMOUNT", Some("O3"), "S1"),
        st("T4", "-12.00", "GBP", "COMMISSION_FEE", Some("O3"), "S1"),
        // A shop with no rate of its own, and no default.
        st("T5", "50.00", "EUR", "ORDER_AMOUNT", Some("O5"), "S9"),
        st("T6", "-6.00", "EUR", "COMMISSION_FEE", Some("O5"), "S9"),
        // Not ISO 4217: no minor units to round to.
        st("T7", "50.00", "XYZ", "ORDER_AMOUNT", Some("O7"), "S1"),
        st("T8", "-6.00", "XYZ", "COMMISSION_FEE", Some("O7"), "S1"),
    ];
    let matched = reconcile(commission(None, &[("S1", "0.12")]), &lines, &[]);
    let details: Vec<(String, Option<String>, String)> = matched
        .variances
        .iter()
        .map(|v| {
            (
                v.reference().to_owned(),
                text(v.difference),
                v.detail.clone(),
            )
        })
        .collect();
    assert_eq!(
        details,
        vec![
            (
                "T1".into(),
                None,
                "rate commission-rate: no ORDER_AMOUNT line has order_line_id O8; the rate \
                 cannot be checked"
                    .into()
            ),
            (
                "T2".into(),
                None,
                "rate commission-rate: the line has no order_line_id, so its ORDER_AMOUNT line \
                 cannot be found and its rate not checked"
                    .into()
            ),
            (
                "T6".into(),
                None,
                "rate commission-rate: no rate is contracted for shop_id \"S9\" (and no \
                 default)"
                    .into()
            ),
            (
                "T4".into(),
                None,
                "rate commission-rate: the COMMISSION_FEE and ORDER_AMOUNT lines of \
                 order_line_id O3 are in different currencies; the rate cannot be checked"
                    .into()
            ),
            (
                "T8".into(),
                None,
                "rate commission-rate: \"XYZ\" is not an ISO 4217 currency code; write an \
                 active three-letter code such as EUR, JPY or BHD: its minor units are \
                 unknown; the rate cannot be checked"
                    .into()
            ),
        ]
    );
    assert!(
        matched
            .variances
            .iter()
            .all(|v| v.kind == Kind::RateMismatch)
    );
}

#[test]
fn vat_on_the_commission_has_the_commission_sign() {
    let vat = RateCheck {
        name: "commission-vat".into(),
        charged: ("/type".into(), "COMMISSION_VAT".into()),
        base: ("/type".into(), "COMMISSION_FEE".into()),
        sign: RateSign::Same,
        ..commission(Some("0.20"), &[])
    };
    let lines = vec![
        st("T1", "-12.00", "EUR", "COMMISSION_FEE", Some("O1"), "S1"),
        st("T2", "-2.40", "EUR", "COMMISSION_VAT", Some("O1"), "S1"),
        st("T3", "-10.00", "EUR", "COMMISSION_FEE", Some("O2"), "S1"),
        st("T4", "-2.50", "EUR", "COMMISSION_VAT", Some("O2"), "S1"),
    ];
    let matched = reconcile(vat, &lines, &[]);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::RateMismatch, "T4".into(), Some("0.50".into()))]
    );
    let v = found(&matched, Kind::RateMismatch, "T4");
    assert_eq!(text(v.expected_amount), Some("-2.00".into()));
    assert_eq!(v.rule.as_deref(), Some("commission-vat"));
}

#[test]
fn one_cycle_alone_judges_its_charges_on_bases_of_any_cycle() {
    let mut late = st("T2", "-30.00", "EUR", "COMMISSION_FEE", Some("O1"), "S1");
    late[1] = Some("C2");
    let lines = vec![
        st("T1", "200.00", "EUR", "ORDER_AMOUNT", Some("O1"), "S1"),
        late,
    ];
    let ledger = posted(&lines, &[]);
    let only = |cycle| {
        run_cycle(
            with_rate(commission(Some("0.12"), &[])),
            &self::lines(&ledger),
            &self::lines(&lines),
            Some(cycle),
        )
    };
    assert!(only("C1").variances.is_empty());
    assert_eq!(
        kinds(&only("C2")),
        vec![(Kind::RateMismatch, "T2".into(), Some("6.00".into()))]
    );
}

#[test]
fn line_dates_age_unmatched_lines_and_span_cycles() {
    let mut plan = plan(Strategy::OneToOne);
    plan.line_date = Some(LineDates {
        statement: "/date".into(),
        ledger: Some("/posted".into()),
    });
    let statement: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C1"),
            Some("10.00"),
            Some("EUR"),
            Some("2026-10-01T08:00:00Z"),
        ],
        &[
            Some("T2"),
            Some("C1"),
            Some("5.00"),
            Some("EUR"),
            Some("2026-10-03T23:59:59Z"),
        ],
        // Not a time: of unknown age, and still reconciled.
        &[
            Some("T3"),
            Some("C1"),
            Some("1.00"),
            Some("EUR"),
            Some("soon"),
        ],
    ];
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C1"),
            Some("10.00"),
            Some("EUR"),
            Some("J1"),
            Some("2026-10-01T09:00:00Z"),
        ],
        &[
            Some("T3"),
            Some("C1"),
            Some("1.00"),
            Some("EUR"),
            Some("J3"),
            None,
        ],
        &[
            Some("X1"),
            Some("C1"),
            Some("2.00"),
            Some("EUR"),
            Some("J9"),
            Some("2026-10-02T00:00:00+02:00"),
        ],
    ];
    let matched = run(plan, &ledger, &statement);
    let dated: Vec<(Kind, Option<i64>)> = matched
        .variances
        .iter()
        .map(|v| (v.kind, v.dated))
        .collect();
    let at = |t: &str| Some(t.parse::<jiff::Timestamp>().unwrap().as_second());
    assert_eq!(
        dated,
        vec![
            (Kind::MissingInLedger, at("2026-10-03T23:59:59Z")),
            (Kind::MissingInStatement, at("2026-10-01T22:00:00Z")),
        ]
    );
    assert_eq!(
        matched.cycle_dates.get("C1").copied(),
        at("2026-10-01T08:00:00Z").zip(at("2026-10-03T23:59:59Z"))
    );
    // The date is not part of the report.
    let json = serde_json::to_value(&matched.variances[0]).unwrap();
    assert!(json.get("dated").is_none() && json.get("expected_amount").is_none());
}

#[test]
fn the_lines_of_one_order_line_are_summed() {
    let rate = || commission(Some("0.12"), &[]);
    let lines = |second_fee| {
        vec![
            st("T1", "100.00", "EUR", "ORDER_AMOUNT", Some("O1"), "S1"),
            st("T2", "-10.00", "EUR", "COMMISSION_FEE", Some("O1"), "S1"),
            st("T3", "50.00", "EUR", "ORDER_AMOUNT", Some("O1"), "S1"),
            st("T4", second_fee, "EUR", "COMMISSION_FEE", Some("O1"), "S1"),
        ]
    };
    // -10.00 and -8.00 are 12 % of 150.00 between them.
    assert!(reconcile(rate(), &lines("-8.00"), &[]).variances.is_empty());
    let matched = reconcile(rate(), &lines("-10.00"), &[]);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::RateMismatch, "T2".into(), Some("2.00".into()))]
    );
    let v = found(&matched, Kind::RateMismatch, "T2");
    assert_eq!(text(v.statement_amount), Some("-20.00".into()));
    assert_eq!(text(v.expected_amount), Some("-18.00".into()));
}
