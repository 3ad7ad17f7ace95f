//! The matcher on small hand-made sides: every kind, tolerance, the date window, the three
//! strategies, currencies with 0, 2 and 3 decimals, and a deterministic result.

use std::borrow::Cow;
use std::time::Duration;

use indexmap::IndexMap;

use super::amount::Amount;
use super::matcher::{Kind, Matched, Matcher, Side};
use super::plan::{DateWindow, Pair, ReconcilePlan, Rule, Strategy, Tolerance};

pub(super) fn pair(statement: &str, ledger: &str) -> Pair {
    Pair {
        statement: statement.into(),
        ledger: ledger.into(),
    }
}

pub(super) fn plan(strategy: Strategy) -> ReconcilePlan {
    ReconcilePlan {
        key: pair("/tid", "/ref"),
        cycle: pair("/cycle", "/cycle"),
        amount: pair("/amount", "/amount"),
        currency: pair("/cur", "/cur"),
        ledger_line: Some("/jid".into()),
        strategy,
        tolerance: Tolerance::default(),
        date: None,
        rules: Vec::new(),
        rates: Vec::new(),
        line_date: None,
    }
}

/// A ledger line: key, cycle, amount, currency, journal ID, then the date and rule fields the
/// plan adds (in that order).
pub(super) type Line<'a> = &'a [Option<&'a str>];

pub(super) fn run(plan: ReconcilePlan, ledger: &[Line<'_>], statement: &[Line<'_>]) -> Matched {
    run_cycle(plan, ledger, statement, None)
}

pub(super) fn run_cycle(
    plan: ReconcilePlan,
    ledger: &[Line<'_>],
    statement: &[Line<'_>],
    cycle: Option<&str>,
) -> Matched {
    let mut matcher = Matcher::new(plan, cycle.map(str::to_owned));
    for (i, line) in ledger.iter().enumerate() {
        let slots: Vec<Option<Cow<'_, str>>> = line.iter().map(|v| v.map(Cow::Borrowed)).collect();
        matcher
            .add(Side::Ledger, Ok(&slots), i as u64 + 2, &String::new)
            .unwrap();
    }
    matcher.ledger_done();
    for (i, line) in statement.iter().enumerate() {
        let slots: Vec<Option<Cow<'_, str>>> = line.iter().map(|v| v.map(Cow::Borrowed)).collect();
        matcher
            .add(Side::Statement, Ok(&slots), i as u64 + 1, &String::new)
            .unwrap();
    }
    matcher.finish().unwrap()
}

pub(super) fn kinds(matched: &Matched) -> Vec<(Kind, String, Option<String>)> {
    matched
        .variances
        .iter()
        .map(|v| {
            (
                v.kind,
                v.reference().to_owned(),
                v.difference.map(|d| d.to_string()),
            )
        })
        .collect()
}

#[test]
fn each_kind_of_the_verifier_is_found_with_its_difference() {
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C1"),
            Some("10.00"),
            Some("EUR"),
            Some("J1"),
        ],
        &[
            Some("T3"),
            Some("C1"),
            Some("5.00"),
            Some("EUR"),
            Some("J3a"),
        ],
        &[
            Some("T3"),
            Some("C1"),
            Some("5.00"),
            Some("EUR"),
            Some("J3b"),
        ],
        &[
            Some("T4"),
            Some("C1"),
            Some("7.00"),
            Some("GBP"),
            Some("J4"),
        ],
        &[
            Some("T5"),
            Some("C1"),
            Some("8.34"),
            Some("EUR"),
            Some("J5"),
        ],
        &[
            Some("X1"),
            Some("C1"),
            Some("1.50"),
            Some("EUR"),
            Some("J6"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("T1"), Some("C1"), Some("10.0"), Some("EUR")],
        &[Some("T2"), Some("C1"), Some("-3.20"), Some("EUR")],
        &[Some("T3"), Some("C1"), Some("5.00"), Some("EUR")],
        &[Some("T4"), Some("C1"), Some("7.00"), Some("EUR")],
        &[Some("T5"), Some("C1"), Some("10.01"), Some("EUR")],
    ];
    let matched = run(plan(Strategy::OneToOne), &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![
            (Kind::MissingInLedger, "T2".into(), Some("3.20".into())),
            (Kind::DuplicateInLedger, "T3".into(), Some("5.00".into())),
            (Kind::CurrencyMismatch, "T4".into(), None),
            (Kind::AmountMismatch, "T5".into(), Some("-1.67".into())),
            (Kind::MissingInStatement, "J6".into(), Some("1.50".into())),
        ]
    );
    let totals = &matched.totals[&("C1".to_owned(), "EUR".to_owned())];
    assert_eq!(totals.statement.to_string(), "28.81");
    assert_eq!(totals.ledger.to_string(), "29.84");
}

#[test]
fn a_rule_breach_is_a_wrong_party_naming_the_rule() {
    let mut plan = plan(Strategy::OneToOne);
    plan.rules.push(Rule {
        name: "chargeback-bearer".into(),
        description: None,
        when: Some(("/type".into(), "CHARGEBACK".into())),
        ledger_field: "/account".into(),
        by: "/reason".into(),
        expect: IndexMap::from([
            ("fraud".to_owned(), "chargebacks-operator".to_owned()),
            (
                "item_not_received".to_owned(),
                "chargebacks-seller".to_owned(),
            ),
        ]),
    });
    // Ledger: key, cycle, amount, currency, jid, account. Statement: key, cycle, amount,
    // currency, type, reason.
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("J1"),
            Some("chargebacks-seller"),
        ],
        &[
            Some("T2"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("J2"),
            Some("chargebacks-seller"),
        ],
        &[
            Some("T3"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("J3"),
            Some("seller-payable"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("CHARGEBACK"),
            Some("fraud"),
        ],
        &[
            Some("T2"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("CHARGEBACK"),
            Some("item_not_received"),
        ],
        &[
            Some("T3"),
            Some("C1"),
            Some("-9"),
            Some("JPY"),
            Some("ORDER_AMOUNT"),
            None,
        ],
    ];
    let matched = run(plan, &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::WrongParty, "T1".into(), Some("0".into()))]
    );
    let variance = &matched.variances[0];
    assert_eq!(variance.rule.as_deref(), Some("chargeback-bearer"));
    assert!(
        variance.detail.contains("expected chargebacks-operator"),
        "{}",
        variance.detail
    );
}

#[test]
fn a_difference_within_the_currency_tolerance_is_matched() {
    let mut plan = plan(Strategy::OneToOne);
    plan.tolerance = Tolerance {
        default: Some(Amount::parse("0.01").unwrap()),
        by_currency: IndexMap::from([("JPY".to_owned(), Amount::parse("1").unwrap())]),
    };
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("E1"),
            Some("C"),
            Some("10.01"),
            Some("EUR"),
            Some("J1"),
        ],
        &[
            Some("E2"),
            Some("C"),
            Some("10.02"),
            Some("EUR"),
            Some("J2"),
        ],
        &[Some("Y1"), Some("C"), Some("101"), Some("JPY"), Some("J3")],
        &[Some("Y2"), Some("C"), Some("102"), Some("JPY"), Some("J4")],
        &[
            Some("B1"),
            Some("C"),
            Some("1.001"),
            Some("BHD"),
            Some("J5"),
        ],
        &[
            Some("B2"),
            Some("C"),
            Some("1.011"),
            Some("BHD"),
            Some("J6"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("E1"), Some("C"), Some("10.00"), Some("EUR")],
        &[Some("E2"), Some("C"), Some("10.00"), Some("EUR")],
        &[Some("Y1"), Some("C"), Some("100"), Some("JPY")],
        &[Some("Y2"), Some("C"), Some("100"), Some("JPY")],
        &[Some("B1"), Some("C"), Some("1.000"), Some("BHD")],
        &[Some("B2"), Some("C"), Some("1.000"), Some("BHD")],
    ];
    let matched = run(plan, &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![
            (Kind::AmountMismatch, "B2".into(), Some("0.011".into())),
            (Kind::AmountMismatch, "E2".into(), Some("0.02".into())),
            (Kind::AmountMismatch, "Y2".into(), Some("2".into())),
        ]
    );
    assert_eq!(matched.within_tolerance, 3);
}

#[test]
fn a_ledger_date_outside_the_window_is_a_variance() {
    let mut plan = plan(Strategy::OneToOne);
    plan.date = Some(DateWindow {
        statement: "/created".into(),
        ledger: "/posted".into(),
        window: Duration::from_secs(3 * 86_400),
    });
    // Ledger: key, cycle, amount, currency, jid, date. Statement: key, cycle, amount,
    // currency, date.
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C"),
            Some("1.00"),
            Some("USD"),
            Some("J1"),
            Some("2026-11-04T00:00:00Z"),
        ],
        &[
            Some("T2"),
            Some("C"),
            Some("1.00"),
            Some("USD"),
            Some("J2"),
            Some("2026-11-05T00:00:01Z"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C"),
            Some("1.00"),
            Some("USD"),
            Some("2026-11-02T00:00:00Z"),
        ],
        &[
            Some("T2"),
            Some("C"),
            Some("1.00"),
            Some("USD"),
            Some("2026-11-02T00:00:00Z"),
        ],
    ];
    let matched = run(plan, &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::DateOutsideWindow, "T2".into(), Some("0.00".into()))]
    );
}

/// A ledger in PostgreSQL `numeric(18, 4)` reads back `850.0000` for 850 yen: the results
/// are written in each currency's minor units when no digit is lost, so the report reads the
/// same whichever column type holds the amounts; an amount finer than its currency, or in a
/// code ISO 4217 does not know, is shown as written, never rounded.
#[test]
fn results_are_written_in_the_currency_minor_units_when_nothing_is_lost() {
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("T1"),
            Some("C"),
            Some("850.0000"),
            Some("JPY"),
            Some("J1"),
        ],
        &[
            Some("T2"),
            Some("C"),
            Some("-24.0000"),
            Some("EUR"),
            Some("J2"),
        ],
        &[
            Some("T3"),
            Some("C"),
            Some("1.2340"),
            Some("BHD"),
            Some("J3"),
        ],
        &[
            Some("T4"),
            Some("C"),
            Some("1.0050"),
            Some("EUR"),
            Some("J4"),
        ],
        &[
            Some("T5"),
            Some("C"),
            Some("2.5000"),
            Some("XYZ"),
            Some("J5"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("T1"), Some("C"), Some("850"), Some("JPY")],
        &[Some("T2"), Some("C"), Some("-30.00"), Some("EUR")],
        &[Some("T3"), Some("C"), Some("1.2"), Some("BHD")],
        &[Some("T4"), Some("C"), Some("1.00"), Some("EUR")],
        &[Some("T5"), Some("C"), Some("2.4"), Some("XYZ")],
    ];
    let matched = run(plan(Strategy::OneToOne), &ledger, &statement);
    // Reference, difference, statement amount, ledger amount, detail.
    type Shown = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let shown: Vec<Shown> = matched
        .variances
        .iter()
        .map(|v| {
            (
                v.reference().to_owned(),
                v.difference.map(|a| a.to_string()),
                v.statement_amount.map(|a| a.to_string()),
                v.ledger_amount.map(|a| a.to_string()),
                v.detail.clone(),
            )
        })
        .collect();
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        shown,
        [
            (
                "T3".to_owned(),
                text("0.034"),
                text("1.200"),
                text("1.234"),
                "statement 1.200 BHD, ledger 1.234 BHD".to_owned()
            ),
            (
                "T2".to_owned(),
                text("6.00"),
                text("-30.00"),
                text("-24.00"),
                "statement -30.00 EUR, ledger -24.00 EUR".to_owned()
            ),
            (
                "T4".to_owned(),
                text("0.0050"),
                text("1.00"),
                text("1.0050"),
                "statement 1.00 EUR, ledger 1.0050 EUR".to_owned()
            ),
            (
                "T5".to_owned(),
                text("0.1000"),
                text("2.4"),
                text("2.5000"),
                "statement 2.4 XYZ, ledger 2.5000 XYZ".to_owned()
            ),
        ]
    );
    let totals: Vec<(String, String, String)> = matched
        .totals
        .iter()
        .map(|((_, currency), t)| {
            (
                currency.clone(),
                t.statement.to_string(),
                t.ledger.to_string(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("BHD", "1.200", "1.234"),
            ("EUR", "-29.00", "-22.9950"),
            ("JPY", "850", "850"),
            ("XYZ", "2.4", "2.5000"),
        ]
        .map(|(c, s, l)| (c.to_owned(), s.to_owned(), l.to_owned()))
    );
}

#[test]
fn one_to_many_sums_the_ledger_lines_of_a_key() {
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("P1"),
            Some("C"),
            Some("-60.00"),
            Some("EUR"),
            Some("J1"),
        ],
        &[
            Some("P1"),
            Some("C"),
            Some("-40.00"),
            Some("EUR"),
            Some("J2"),
        ],
        &[
            Some("P2"),
            Some("C"),
            Some("-60.00"),
            Some("EUR"),
            Some("J3"),
        ],
        &[
            Some("P2"),
            Some("C"),
            Some("-39.99"),
            Some("EUR"),
            Some("J4"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("P1"), Some("C"), Some("-100.00"), Some("EUR")],
        &[Some("P2"), Some("C"), Some("-100.00"), Some("EUR")],
    ];
    let matched = run(plan(Strategy::OneToMany), &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![(Kind::AmountMismatch, "P2".into(), Some("0.01".into()))]
    );
}

#[test]
fn many_to_one_sums_the_statement_lines_of_a_key() {
    // Statement lines of one invoice against its one posting.
    let ledger: Vec<Line<'_>> = vec![
        &[
            Some("INV-1"),
            Some("C"),
            Some("12.500"),
            Some("BHD"),
            Some("J1"),
        ],
        &[
            Some("INV-2"),
            Some("C"),
            Some("3.000"),
            Some("BHD"),
            Some("J2"),
        ],
        &[
            Some("INV-3"),
            Some("C"),
            Some("1.000"),
            Some("BHD"),
            Some("J3"),
        ],
        &[
            Some("INV-3"),
            Some("C"),
            Some("1.000"),
            Some("BHD"),
            Some("J4"),
        ],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("INV-1"), Some("C"), Some("10.000"), Some("BHD")],
        &[Some("INV-1"), Some("C"), Some("2.5"), Some("BHD")],
        &[Some("INV-2"), Some("C"), Some("1.000"), Some("BHD")],
        &[Some("INV-2"), Some("C"), Some("1.000"), Some("BHD")],
        &[Some("INV-3"), Some("C"), Some("2.000"), Some("BHD")],
        &[Some("INV-4"), Some("C"), Some("1.000"), Some("BHD")],
        &[Some("INV-4"), Some("C"), Some("1.000"), Some("EUR")],
    ];
    let matched = run(plan(Strategy::ManyToOne), &ledger, &statement);
    assert_eq!(
        kinds(&matched),
        vec![
            (Kind::MissingInLedger, "INV-4".into(), Some("-2.000".into())),
            (
                Kind::DuplicateInLedger,
                "INV-3".into(),
                Some("0.000".into())
            ),
            (Kind::AmountMismatch, "INV-2".into(), Some("1.000".into())),
        ]
    );
}

#[test]
fn unreadable_lines_are_variances_and_the_rest_is_matched() {
    let ledger: Vec<Line<'_>> = vec![
        &[Some("T1"), Some("C"), Some("1e3"), Some("EUR"), Some("J1")],
        &[Some("T2"), Some("C"), Some("5.00"), Some("EUR"), Some("J2")],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[None, Some("C"), Some("1.00"), Some("EUR")],
        &[Some("T2"), Some("C"), Some("5.00"), Some("EUR")],
    ];
    let matched = run(plan(Strategy::OneToOne), &ledger, &statement);
    let found: Vec<(Kind, String)> = matched
        .variances
        .iter()
        .map(|v| (v.kind, v.detail.clone()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|(kind, _)| *kind == Kind::Unreadable));
    assert!(
        found
            .iter()
            .any(|(_, d)| d.contains("ledger line 2") && d.contains("1e3"))
    );
    assert!(
        found
            .iter()
            .any(|(_, d)| d.contains("statement line 1") && d.contains("/tid"))
    );
}

#[test]
fn one_cycle_alone_reports_only_it_but_sees_every_reference() {
    let ledger: Vec<Line<'_>> = vec![
        // Posted in cycle C2 for a C1 statement line: not missing in the statement.
        &[
            Some("T1"),
            Some("C2"),
            Some("1.00"),
            Some("EUR"),
            Some("J1"),
        ],
        &[Some("X"), Some("C2"), Some("2.00"), Some("EUR"), Some("J2")],
        &[Some("X"), Some("C1"), Some("3.00"), Some("EUR"), Some("J3")],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("T1"), Some("C1"), Some("1.00"), Some("EUR")],
        &[Some("T9"), Some("C1"), Some("4.00"), Some("EUR")],
    ];
    let matched = run_cycle(plan(Strategy::OneToOne), &ledger, &statement, Some("C2"));
    assert_eq!(
        kinds(&matched),
        vec![(Kind::MissingInStatement, "J2".into(), Some("2.00".into()))]
    );
    assert_eq!(matched.totals.len(), 1);
}

#[test]
fn the_result_is_the_same_whatever_the_line_order() {
    let ledger: Vec<Line<'_>> = vec![
        &[Some("A"), Some("C"), Some("1.00"), Some("EUR"), Some("J1")],
        &[Some("B"), Some("C"), Some("2.00"), Some("EUR"), Some("J2")],
        &[Some("Z"), Some("C"), Some("3.00"), Some("EUR"), Some("J3")],
    ];
    let statement: Vec<Line<'_>> = vec![
        &[Some("B"), Some("C"), Some("2.50"), Some("EUR")],
        &[Some("Q"), Some("C"), Some("1.00"), Some("EUR")],
        &[Some("A"), Some("C"), Some("1.00"), Some("EUR")],
    ];
    let forward = kinds(&run(plan(Strategy::OneToOne), &ledger, &statement));
    let mut ledger_rev = ledger.clone();
    ledger_rev.reverse();
    let mut statement_rev = statement.clone();
    statement_rev.reverse();
    let backward = kinds(&run(plan(Strategy::OneToOne), &ledger_rev, &statement_rev));
    assert_eq!(forward, backward);
    assert_eq!(forward.len(), 3);
}
