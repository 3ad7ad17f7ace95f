//! Matching: the ledger is loaded first (compact, see [`super::ledger`]), then the statement
//! is streamed past it line by line; each line (or, many-to-one, each group of lines) is
//! judged against the ledger lines sharing its key, and every ledger line no statement line
//! referenced is a `missing_in_statement`. The semantics are those of the shared benchmark's
//! verifier (`verify_settlement.py`), extended with tolerance, a date window, rules and the
//! two aggregating strategies.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::amount::{Amount, AmountError};
use super::extract::{Fields, Slot};
use super::ledger::{Entry, Interner, Ledger, LedgerTooLarge, NONE};
use super::plan::{ReconcilePlan, Strategy};
use super::rates::{self, Positions, RateState};
use crate::spec::model::FailureMode;

/// What kind of difference a variance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// No ledger line has the statement line's key.
    MissingInLedger,
    /// One-to-one and many-to-one: two or more ledger lines have the key.
    DuplicateInLedger,
    /// The ledger line is in another currency.
    CurrencyMismatch,
    /// The amounts differ by more than the tolerance.
    AmountMismatch,
    /// The ledger date is outside the declared window.
    DateOutsideWindow,
    /// A rule was breached (a line booked to the party that does not bear it).
    WrongParty,
    /// A statement line charged at another rate than the contracted one (a commission of 15 %
    /// where 12 % is contracted), or one whose rate cannot be checked.
    RateMismatch,
    /// A ledger line no statement line explains.
    MissingInStatement,
    /// A line that could not be read (not JSON, a missing key or amount, a bad amount).
    Unreadable,
}

impl Kind {
    /// The name in reports (`missing_in_ledger`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MissingInLedger => "missing_in_ledger",
            Kind::DuplicateInLedger => "duplicate_in_ledger",
            Kind::CurrencyMismatch => "currency_mismatch",
            Kind::AmountMismatch => "amount_mismatch",
            Kind::DateOutsideWindow => "date_outside_window",
            Kind::WrongParty => "wrong_party",
            Kind::RateMismatch => "rate_mismatch",
            Kind::MissingInStatement => "missing_in_statement",
            Kind::Unreadable => "unreadable",
        }
    }

    /// The failure mode its dead letter carries.
    pub fn failure(self) -> FailureMode {
        match self {
            Kind::WrongParty => FailureMode::OwnershipViolation,
            _ => FailureMode::ReconciliationVariance,
        }
    }
}

/// Which side a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The operator statement (the flow's `from:`).
    Statement,
    /// The ledger (`reconcile.ledger`).
    Ledger,
}

/// One variance.
#[derive(Debug, Clone, Serialize)]
pub struct Variance {
    /// What kind.
    pub kind: Kind,
    /// The statement key (`transaction_id`, or the group key many-to-one); `None` for
    /// `missing_in_statement`.
    pub transaction_id: Option<String>,
    /// The ledger line's ID, when one ledger line is concerned.
    pub journal_id: Option<String>,
    /// The billing cycle (the statement's; the ledger line's for `missing_in_statement`).
    pub billing_cycle_id: String,
    /// The currency, likewise.
    pub currency: String,
    /// Ledger minus statement; `None` when the currencies differ (no conversion).
    #[serde(serialize_with = "opt_amount")]
    pub difference: Option<Amount>,
    /// The statement amount (summed many-to-one).
    #[serde(serialize_with = "opt_amount")]
    pub statement_amount: Option<Amount>,
    /// The ledger amount (summed one-to-many and for duplicates).
    #[serde(serialize_with = "opt_amount")]
    pub ledger_amount: Option<Amount>,
    /// The rule breached, for `wrong_party`; the rate, for `rate_mismatch`.
    pub rule: Option<String>,
    /// What the contract says the statement should have charged (`rate_mismatch`).
    #[serde(serialize_with = "opt_amount", skip_serializing_if = "Option::is_none")]
    pub expected_amount: Option<Amount>,
    /// What was found, for people.
    pub detail: String,
    /// The side and line the variance is read from (first line of a group).
    pub side: Side,
    /// The 1-based line (file sources) or record number.
    pub line: u64,
    /// When the line concerned happened (Unix seconds), when the flow dates its lines: the
    /// age of an unmatched line in the metrics.
    #[serde(skip)]
    pub dated: Option<i64>,
}

fn opt_amount<S: serde::Serializer>(value: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(amount) => s.serialize_str(&amount.to_string()),
        None => s.serialize_none(),
    }
}

impl Variance {
    /// The reference the variance is keyed by: the statement key, or the ledger line's ID.
    pub fn reference(&self) -> &str {
        match self.kind {
            Kind::MissingInStatement => self.journal_id.as_deref().unwrap_or(""),
            _ => self.transaction_id.as_deref().unwrap_or(""),
        }
    }

    /// Its size for ordering by significance: the absolute difference, or the amount at stake.
    pub fn magnitude(&self) -> Amount {
        self.difference
            .or(self.statement_amount)
            .or(self.ledger_amount)
            .unwrap_or(Amount::ZERO)
            .abs()
    }
}

/// Totals of one cycle and currency.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Sum of statement amounts.
    pub statement: Amount,
    /// Sum of ledger amounts (by the ledger line's own cycle and currency).
    pub ledger: Amount,
    /// Statement lines counted.
    pub statement_lines: u64,
    /// Ledger lines counted.
    pub ledger_lines: u64,
}

/// A reconciliation that could not be carried out (unlike a variance, which is a finding).
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// The ledger does not fit the compact form.
    #[error(transparent)]
    TooLarge(#[from] LedgerTooLarge),
    /// A sum overflowed exact arithmetic.
    #[error("cycle {cycle} {currency}: {source}")]
    Overflow {
        /// The cycle.
        cycle: String,
        /// The currency.
        currency: String,
        /// The overflow.
        source: AmountError,
    },
}

/// The result of matching.
#[derive(Debug, Default)]
pub struct Matched {
    /// Totals by (cycle, currency), sorted.
    pub totals: BTreeMap<(String, String), Totals>,
    /// Variances, deterministic order: cycle, currency, kind, reference.
    pub variances: Vec<Variance>,
    /// Statement lines read (all cycles).
    pub statement_lines: u64,
    /// Ledger lines read (all cycles).
    pub ledger_lines: u64,
    /// Pairs matched within a non-zero tolerance rather than exactly.
    pub within_tolerance: u64,
    /// Per reported cycle, its earliest and latest statement line date (Unix seconds), when
    /// the flow dates its lines.
    pub cycle_dates: BTreeMap<String, (i64, i64)>,
}

/// Field positions within a side's [`Fields`].
const KEY: usize = 0;
const CYCLE: usize = 1;
const AMOUNT: usize = 2;
const CURRENCY: usize = 3;

/// A statement line's values the judgement needs after the line is gone (many-to-one).
#[derive(Debug, Clone)]
struct Group {
    cycle: u32,
    currency: u32,
    mixed_currency: bool,
    amount: Amount,
    date: Option<i64>,
    /// The line date (`line_date`), for the age of an unmatched line.
    dated: Option<i64>,
    /// (applies, by-value) per rule, from the group's first line.
    rules: Vec<(bool, Option<String>)>,
    line: u64,
    lines: u64,
}

/// The matcher's state.
pub struct Matcher {
    plan: ReconcilePlan,
    cycle_filter: Option<String>,
    statement_fields: Fields,
    ledger_fields: Fields,
    /// Index in the statement fields of the date and each rule's (when, by).
    st_date: Option<usize>,
    st_rules: Vec<(Option<usize>, usize)>,
    /// Index in the ledger fields of the line ID, the date and each rule's field.
    lg_line: Option<usize>,
    lg_date: Option<usize>,
    lg_rules: Vec<usize>,
    /// Index in the statement fields of each rate's fields, and in each side's of the line
    /// date.
    st_rates: Vec<Positions>,
    st_dated: Option<usize>,
    lg_dated: Option<usize>,
    rates: Vec<RateState>,
    cycle_dates: HashMap<u32, (i64, i64)>,
    /// Per side, the last line date read and its value: the lines of one order share it, so
    /// most lines skip the parse.
    last_date: [(String, Option<i64>); 2],
    names: Interner,
    ledger: Ledger,
    seen: Vec<u64>,
    totals: HashMap<(u32, u32), Totals>,
    variances: Vec<Variance>,
    variance_at: HashMap<(Kind, String), usize>,
    groups: HashMap<Box<str>, Group>,
    group_order: Vec<Box<str>>,
    hits: Vec<u32>,
    extra: Vec<u32>,
    statement_lines: u64,
    within_tolerance: u64,
    /// Variances (by position) a later finding explains better and replaces.
    superseded: HashSet<usize>,
}

impl Matcher {
    /// A matcher for `plan`; with `cycle`, only that billing cycle is reported.
    pub fn new(plan: ReconcilePlan, cycle: Option<String>) -> Self {
        let mut st = vec![
            plan.key.statement.clone(),
            plan.cycle.statement.clone(),
            plan.amount.statement.clone(),
            plan.currency.statement.clone(),
        ];
        let mut lg = vec![
            plan.key.ledger.clone(),
            plan.cycle.ledger.clone(),
            plan.amount.ledger.clone(),
            plan.currency.ledger.clone(),
        ];
        // A pointer read twice (`/type` by a rule and two rates) is read once: every field
        // costs a comparison per key of every line.
        let push = |fields: &mut Vec<String>, pointer: &str| match fields
            .iter()
            .position(|p| p == pointer)
        {
            Some(at) => at,
            None => {
                fields.push(pointer.to_owned());
                fields.len() - 1
            }
        };
        let lg_line = plan.ledger_line.as_deref().map(|p| push(&mut lg, p));
        let st_date = plan.date.as_ref().map(|d| push(&mut st, &d.statement));
        let lg_date = plan.date.as_ref().map(|d| push(&mut lg, &d.ledger));
        let st_rules = plan
            .rules
            .iter()
            .map(|rule| {
                let when = rule.when.as_ref().map(|(field, _)| push(&mut st, field));
                (when, push(&mut st, &rule.by))
            })
            .collect();
        let lg_rules = plan
            .rules
            .iter()
            .map(|rule| push(&mut lg, &rule.ledger_field))
            .collect();
        let st_rates = plan
            .rates
            .iter()
            .map(|rate| Positions {
                charged: push(&mut st, &rate.charged.0),
                base: push(&mut st, &rate.base.0),
                per: push(&mut st, &rate.per),
                by: rate.by.as_ref().map(|by| push(&mut st, by)),
            })
            .collect();
        let st_dated = plan
            .line_date
            .as_ref()
            .map(|dates| push(&mut st, &dates.statement));
        let lg_dated = plan
            .line_date
            .as_ref()
            .and_then(|dates| dates.ledger.as_deref())
            .map(|pointer| push(&mut lg, pointer));
        let rules = plan.rules.len();
        Self {
            cycle_filter: cycle,
            statement_fields: Fields::new(st),
            ledger_fields: Fields::new(lg),
            st_date,
            st_rules,
            lg_line,
            lg_date,
            lg_rules,
            rates: plan.rates.iter().map(|_| RateState::default()).collect(),
            st_rates,
            st_dated,
            lg_dated,
            cycle_dates: HashMap::new(),
            last_date: [(String::new(), None), (String::new(), None)],
            names: Interner::default(),
            ledger: Ledger::new(rules),
            seen: Vec::new(),
            totals: HashMap::new(),
            variances: Vec::new(),
            variance_at: HashMap::new(),
            groups: HashMap::new(),
            group_order: Vec::new(),
            hits: Vec::new(),
            extra: vec![NONE; rules],
            statement_lines: 0,
            within_tolerance: 0,
            superseded: HashSet::new(),
            plan,
        }
    }

    /// The fields read from the statement.
    pub(crate) fn statement_fields(&self) -> &Fields {
        &self.statement_fields
    }

    /// The fields read from the ledger.
    pub(crate) fn ledger_fields(&self) -> &Fields {
        &self.ledger_fields
    }

    fn reported(&self, cycle: &str) -> bool {
        self.cycle_filter.as_deref().is_none_or(|c| c == cycle)
    }

    /// Adds a line (or an unreadable one) of `side`; `values` are its fields in the order of
    /// that side's [`Fields`]. `original` gives the line's text for an unreadable variance.
    pub(crate) fn add(
        &mut self,
        side: Side,
        values: Result<&[Slot<'_>], String>,
        line: u64,
        original: &dyn Fn() -> String,
    ) -> Result<(), MatchError> {
        let result = match values {
            Ok(values) => match side {
                Side::Ledger => self.add_ledger(values, line),
                Side::Statement => self.add_statement(values, line),
            },
            Err(error) => Err(Failure::Line(error)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Match(err)) => Err(err),
            Err(Failure::Line(error)) => {
                self.unreadable(side, line, error, original());
                Ok(())
            }
        }
    }

    fn unreadable(&mut self, side: Side, line: u64, error: String, original: String) {
        let what = match side {
            Side::Statement => "statement",
            Side::Ledger => "ledger",
        };
        let mut text: String = original.chars().take(200).collect();
        if text.len() < original.len() {
            text.push_str("...");
        }
        self.put(Variance {
            kind: Kind::Unreadable,
            transaction_id: Some(format!("{what} line {line}")),
            journal_id: None,
            billing_cycle_id: String::new(),
            currency: String::new(),
            difference: None,
            statement_amount: None,
            ledger_amount: None,
            rule: None,
            expected_amount: None,
            detail: format!("{what} line {line} could not be read: {error}: {text}"),
            side,
            line,
            dated: None,
        });
    }

    fn add_ledger(&mut self, values: &[Slot<'_>], line: u64) -> Result<(), Failure> {
        let key = required(values, KEY, "key", &self.plan.key.ledger)?;
        let cycle = required(values, CYCLE, "cycle", &self.plan.cycle.ledger)?;
        let currency = required(values, CURRENCY, "currency", &self.plan.currency.ledger)?;
        let amount = amount(values, &self.plan.amount.ledger)?;
        let date = match self.lg_date {
            Some(at) => Some(date(values, at)?),
            None => None,
        };
        for (slot, &at) in self.extra.iter_mut().zip(&self.lg_rules) {
            *slot = match values.get(at).and_then(Option::as_deref) {
                Some(text) => self.names.intern(text),
                None => NONE,
            };
        }
        let entry = Entry {
            cycle: self.names.intern(cycle),
            currency: self.names.intern(currency),
            amount,
        };
        let line_id = self
            .lg_line
            .and_then(|at| values.get(at).and_then(Option::as_deref));
        let dated = self
            .lg_dated
            .map(|at| self.line_date(Side::Ledger, values, at));
        self.ledger
            .push(
                key.as_bytes(),
                line_id.map(str::as_bytes),
                line,
                entry,
                (date, dated),
                &self.extra,
            )
            .map_err(|e| Failure::Match(e.into()))?;
        if self.reported(cycle) {
            let totals = self
                .totals
                .entry((entry.cycle, entry.currency))
                .or_default();
            totals.ledger = add(totals.ledger, amount, cycle, currency)?;
            totals.ledger_lines += 1;
        }
        Ok(())
    }

    /// A line's date (`line_date`), parsed once per run of equal texts.
    fn line_date(&mut self, side: Side, values: &[Slot<'_>], at: usize) -> Option<i64> {
        let text = values.get(at).and_then(Option::as_deref)?;
        let last = &mut self.last_date[usize::from(side == Side::Ledger)];
        if last.0 != text {
            last.0.clear();
            last.0.push_str(text);
            last.1 = lenient_date(values, at);
        }
        last.1
    }

    /// Call once the whole ledger is added, before the first statement line.
    pub(crate) fn ledger_done(&mut self) {
        self.seen = vec![0; self.ledger.len().div_ceil(64)];
    }

    fn add_statement(&mut self, values: &[Slot<'_>], line: u64) -> Result<(), Failure> {
        let key = required(values, KEY, "key", &self.plan.key.statement)?;
        let cycle_text = required(values, CYCLE, "cycle", &self.plan.cycle.statement)?;
        let currency_text = required(values, CURRENCY, "currency", &self.plan.currency.statement)?;
        let amount = amount(values, &self.plan.amount.statement)?;
        let date = match self.st_date {
            Some(at) => Some(date(values, at)?),
            None => None,
        };
        self.statement_lines += 1;
        let cycle = self.names.intern(cycle_text);
        let currency = self.names.intern(currency_text);
        self.ledger.lookup(key.as_bytes(), &mut self.hits);
        for &hit in &self.hits {
            self.seen[hit as usize / 64] |= 1 << (hit % 64);
        }
        let reported = self.reported(cycle_text);
        let dated = match self.st_dated {
            Some(at) => self.line_date(Side::Statement, values, at),
            None => None,
        };
        if reported {
            let totals = self.totals.entry((cycle, currency)).or_default();
            totals.statement = add(totals.statement, amount, cycle_text, currency_text)?;
            totals.statement_lines += 1;
            if let Some(at) = dated {
                let span = self.cycle_dates.entry(cycle).or_insert((at, at));
                span.0 = span.0.min(at);
                span.1 = span.1.max(at);
            }
        }
        if !self.rates.is_empty() {
            let rate_line = rates::Line {
                transaction_id: key,
                cycle,
                currency,
                amount,
                line,
            };
            for ((state, check), &at) in self
                .rates
                .iter_mut()
                .zip(&self.plan.rates)
                .zip(&self.st_rates)
            {
                state.add(check, at, values, &rate_line, &mut self.names);
            }
        }
        let rules: Vec<(bool, Option<String>)> = self
            .st_rules
            .iter()
            .zip(&self.plan.rules)
            .map(|(&(when, by), rule)| {
                let applies = match (&rule.when, when) {
                    (Some((_, equals)), Some(at)) => {
                        values.get(at).and_then(Option::as_deref) == Some(equals.as_str())
                    }
                    _ => true,
                };
                let by = values.get(by).and_then(Option::as_deref).map(str::to_owned);
                (applies, by)
            })
            .collect();
        let group = Group {
            cycle,
            currency,
            mixed_currency: false,
            amount,
            date,
            dated,
            rules,
            line,
            lines: 1,
        };
        if self.plan.strategy == Strategy::ManyToOne {
            // Judged once every line of the group is in (`finish`).
            match self.groups.get_mut(key) {
                Some(existing) => {
                    existing.mixed_currency |= existing.currency != currency;
                    existing.amount = add(existing.amount, amount, cycle_text, currency_text)?;
                    existing.lines += 1;
                }
                None => {
                    let key: Box<str> = Box::from(key);
                    self.group_order.push(key.clone());
                    self.groups.insert(key, group);
                }
            }
            return Ok(());
        }
        if reported {
            let hits = std::mem::take(&mut self.hits);
            self.judge(key, &group, &hits);
            self.hits = hits;
        }
        Ok(())
    }

    /// Judges a statement line (or group) against the ledger lines with its key.
    fn judge(&mut self, key: &str, group: &Group, hits: &[u32]) {
        let cycle = self.names.name(group.cycle).to_owned();
        let currency = self.names.name(group.currency).to_owned();
        let base = Variance {
            kind: Kind::MissingInLedger,
            transaction_id: Some(key.to_owned()),
            journal_id: None,
            billing_cycle_id: cycle,
            currency: currency.clone(),
            difference: None,
            statement_amount: Some(group.amount),
            ledger_amount: None,
            rule: None,
            expected_amount: None,
            detail: String::new(),
            side: Side::Statement,
            line: group.line,
            dated: group.dated,
        };
        let entries: Vec<Entry> = hits.iter().map(|&h| self.ledger.entry(h)).collect();
        let ledger_sum = entries
            .iter()
            .try_fold(Amount::ZERO, |sum, e| sum.checked_add(e.amount))
            .ok();
        let first_line = hits.first().map(|&h| self.ledger.line_id(h));
        let variance = if hits.is_empty() {
            Some(Variance {
                difference: Some(group.amount.negated()),
                detail: format!("no ledger line references {key}"),
                ..base
            })
        } else if hits.len() > 1 && self.plan.strategy != Strategy::OneToMany {
            let ids: Vec<String> = hits.iter().map(|&h| self.ledger.line_id(h)).collect();
            Some(Variance {
                kind: Kind::DuplicateInLedger,
                journal_id: first_line,
                ledger_amount: ledger_sum,
                difference: ledger_sum.and_then(|sum| sum.checked_sub(group.amount).ok()),
                detail: format!(
                    "{} ledger lines reference {key}: {}",
                    hits.len(),
                    ids.join(", ")
                ),
                ..base
            })
        } else if group.mixed_currency || entries.iter().any(|e| e.currency != group.currency) {
            let found: Vec<&str> = entries
                .iter()
                .map(|e| self.names.name(e.currency))
                .collect();
            Some(Variance {
                kind: Kind::CurrencyMismatch,
                journal_id: first_line,
                detail: if group.mixed_currency {
                    format!("the statement lines of {key} are in several currencies")
                } else {
                    format!(
                        "statement in {currency}, ledger in {}; amounts are never converted",
                        found.join(", ")
                    )
                },
                ..base
            })
        } else {
            self.judge_amounts(key, group, hits, ledger_sum, base, first_line)
        };
        if let Some(variance) = variance {
            self.put(variance);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge_amounts(
        &mut self,
        key: &str,
        group: &Group,
        hits: &[u32],
        ledger_sum: Option<Amount>,
        base: Variance,
        first_line: Option<String>,
    ) -> Option<Variance> {
        let currency = base.currency.clone();
        let ledger_sum = ledger_sum?;
        let difference = ledger_sum.checked_sub(group.amount).ok()?;
        if !difference.is_zero() {
            let tolerance = self.plan.tolerance.of(&currency);
            if difference.abs().cmp_value(tolerance).is_gt() {
                return Some(Variance {
                    kind: Kind::AmountMismatch,
                    journal_id: first_line,
                    ledger_amount: Some(ledger_sum),
                    difference: Some(difference),
                    detail: format!(
                        "statement {} {currency}, ledger {} {currency}",
                        in_minor_units(group.amount, &currency),
                        in_minor_units(ledger_sum, &currency)
                    ),
                    ..base
                });
            }
            self.within_tolerance += 1;
        }
        if let (Some(window), Some(st_date)) = (&self.plan.date, group.date) {
            let limit = i64::try_from(window.window.as_secs()).unwrap_or(i64::MAX);
            for &hit in hits {
                let Some(lg_date) = self.ledger.date(hit) else {
                    continue;
                };
                if lg_date == i64::MIN || (lg_date - st_date).abs() > limit {
                    return Some(Variance {
                        kind: Kind::DateOutsideWindow,
                        journal_id: Some(self.ledger.line_id(hit)),
                        ledger_amount: Some(ledger_sum),
                        difference: Some(Amount::ZERO),
                        detail: format!(
                            "ledger line {} is dated {} s from the statement line, more than the window of {} s",
                            self.ledger.line_id(hit),
                            if lg_date == i64::MIN {
                                "an unknown number of".to_owned()
                            } else {
                                (lg_date - st_date).abs().to_string()
                            },
                            limit
                        ),
                        ..base
                    });
                }
            }
        }
        for (index, rule) in self.plan.rules.iter().enumerate() {
            let (applies, by) = &group.rules[index];
            if !applies {
                continue;
            }
            let expected = by.as_deref().and_then(|by| rule.expect.get(by));
            for &hit in hits {
                let found = self.ledger.extra(hit, index);
                let ok = match expected {
                    Some(expected) => self.names.get(expected).is_some_and(|id| id == found),
                    None => false,
                };
                if !ok {
                    let found = if found == NONE {
                        "nothing"
                    } else {
                        self.names.name(found)
                    };
                    let detail = match expected {
                        Some(expected) => format!(
                            "rule {}: {key} ({} {}) is booked to {found}, expected {expected}",
                            rule.name,
                            rule.by.trim_start_matches('/'),
                            by.as_deref().unwrap_or("")
                        ),
                        None => format!(
                            "rule {}: no expected {} is declared for {} {:?}; booked to {found}",
                            rule.name,
                            rule.ledger_field.trim_start_matches('/'),
                            rule.by.trim_start_matches('/'),
                            by.as_deref().unwrap_or("")
                        ),
                    };
                    return Some(Variance {
                        kind: Kind::WrongParty,
                        journal_id: Some(self.ledger.line_id(hit)),
                        ledger_amount: Some(ledger_sum),
                        difference: Some(Amount::ZERO),
                        rule: Some(rule.name.clone()),
                        detail,
                        ..base
                    });
                }
            }
        }
        None
    }

    /// Keeps a variance; a later one with the same kind and reference replaces it (a
    /// statement listing one reference twice yields one variance, as the verifier counts).
    fn put(&mut self, variance: Variance) {
        let id = (variance.kind, variance.reference().to_owned());
        match self.variance_at.get(&id) {
            Some(&at) => self.variances[at] = variance,
            None => {
                self.variance_at.insert(id, self.variances.len());
                self.variances.push(variance);
            }
        }
    }

    /// Judges the contracted rates once the whole statement is in. A charged line at another
    /// rate is a `rate_mismatch` naming the rate. When the ledger posted the contracted
    /// amount, the `amount_mismatch` that line shows against the ledger is the same defect
    /// seen from the other side, and the rate variance replaces it: one defect, one variance.
    fn judge_rates(&mut self) {
        let states = std::mem::take(&mut self.rates);
        let mut findings = Vec::new();
        for (index, (state, check)) in states.into_iter().zip(&self.plan.rates).enumerate() {
            for finding in state.finish(check, &self.names) {
                findings.push((index, finding));
            }
        }
        let mut hits = Vec::new();
        for (index, finding) in findings {
            let cycle = self.names.name(finding.cycle).to_owned();
            if !self.reported(&cycle) {
                continue;
            }
            let check = &self.plan.rates[index];
            let currency = self.names.name(finding.currency).to_owned();
            self.ledger
                .lookup(finding.transaction_id.as_bytes(), &mut hits);
            let journal_id = hits.first().map(|&hit| self.ledger.line_id(hit));
            let ledger_amount = (!hits.is_empty())
                .then(|| {
                    hits.iter().try_fold(Amount::ZERO, |sum, &hit| {
                        sum.checked_add(self.ledger.entry(hit).amount)
                    })
                })
                .and_then(Result::ok);
            let mut detail = finding.detail;
            if let (Some(expected), Some(posted), 1) =
                (finding.expected, ledger_amount, finding.charged_lines)
            {
                let agrees = expected
                    .checked_sub(posted)
                    .is_ok_and(|d| d.abs().cmp_value(check.tolerance.of(&currency)).is_le());
                let id = (Kind::AmountMismatch, finding.transaction_id.clone());
                if agrees && let Some(at) = self.variance_at.remove(&id) {
                    self.superseded.insert(at);
                    detail.push_str("; the ledger posted the contracted amount");
                }
            }
            let variance = Variance {
                kind: Kind::RateMismatch,
                transaction_id: Some(finding.transaction_id),
                journal_id,
                billing_cycle_id: cycle,
                currency,
                difference: finding
                    .expected
                    .and_then(|expected| expected.checked_sub(finding.charged).ok()),
                statement_amount: Some(finding.charged),
                ledger_amount,
                rule: Some(check.name.clone()),
                expected_amount: finding.expected,
                detail,
                side: Side::Statement,
                line: finding.line,
                dated: None,
            };
            self.put(variance);
        }
    }

    /// Judges what is left (many-to-one groups, ledger lines no statement line referenced)
    /// and returns the result.
    pub fn finish(mut self) -> Result<Matched, MatchError> {
        if self.plan.strategy == Strategy::ManyToOne {
            let order = std::mem::take(&mut self.group_order);
            let mut groups = std::mem::take(&mut self.groups);
            let mut hits = Vec::new();
            for key in order {
                let Some(group) = groups.remove(&key) else {
                    continue;
                };
                if !self.reported(self.names.name(group.cycle)) {
                    continue;
                }
                self.ledger.lookup(key.as_bytes(), &mut hits);
                self.judge(&key, &group, &hits);
            }
        }
        for id in 0..self.ledger.len() as u32 {
            if self.seen[id as usize / 64] & (1 << (id % 64)) != 0 {
                continue;
            }
            let entry = self.ledger.entry(id);
            let cycle = self.names.name(entry.cycle).to_owned();
            if !self.reported(&cycle) {
                continue;
            }
            let reference = String::from_utf8_lossy(self.ledger.key_of(id)).into_owned();
            self.put(Variance {
                kind: Kind::MissingInStatement,
                transaction_id: None,
                journal_id: Some(self.ledger.line_id(id)),
                billing_cycle_id: cycle,
                currency: self.names.name(entry.currency).to_owned(),
                difference: Some(entry.amount),
                statement_amount: None,
                ledger_amount: Some(entry.amount),
                rule: None,
                expected_amount: None,
                detail: format!("no statement line has the reference {reference}"),
                side: Side::Ledger,
                line: self.ledger.line_no(id),
                dated: self.ledger.dated(id),
            });
        }
        self.judge_rates();
        let mut variances = self.variances;
        if !self.superseded.is_empty() {
            let superseded = std::mem::take(&mut self.superseded);
            variances = variances
                .into_iter()
                .enumerate()
                .filter(|(at, _)| !superseded.contains(at))
                .map(|(_, v)| v)
                .collect();
        }
        for v in &mut variances {
            for amount in [
                &mut v.difference,
                &mut v.statement_amount,
                &mut v.ledger_amount,
                &mut v.expected_amount,
            ] {
                *amount = amount.map(|a| in_minor_units(a, &v.currency));
            }
        }
        variances.sort_by(|a, b| {
            (&a.billing_cycle_id, &a.currency, a.kind, a.reference()).cmp(&(
                &b.billing_cycle_id,
                &b.currency,
                b.kind,
                b.reference(),
            ))
        });
        let totals = self
            .totals
            .into_iter()
            .map(|((cycle, currency), totals)| {
                let currency = self.names.name(currency);
                let totals = Totals {
                    statement: in_minor_units(totals.statement, currency),
                    ledger: in_minor_units(totals.ledger, currency),
                    ..totals
                };
                (
                    (self.names.name(cycle).to_owned(), currency.to_owned()),
                    totals,
                )
            })
            .collect();
        let cycle_dates = self
            .cycle_dates
            .iter()
            .map(|(&cycle, &span)| (self.names.name(cycle).to_owned(), span))
            .collect();
        Ok(Matched {
            totals,
            variances,
            statement_lines: self.statement_lines,
            ledger_lines: self.ledger.len() as u64,
            within_tolerance: self.within_tolerance,
            cycle_dates,
        })
    }
}

/// Why a line was not added.
enum Failure {
    /// The line cannot be read: an `unreadable` variance.
    Line(String),
    /// The run cannot go on.
    Match(MatchError),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Line(message)
    }
}

fn required<'v>(
    values: &'v [Slot<'_>],
    at: usize,
    what: &str,
    pointer: &str,
) -> Result<&'v str, Failure> {
    match values.get(at).and_then(Option::as_deref) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(Failure::Line(format!("its {what} ({pointer}) is missing"))),
    }
}

fn amount(values: &[Slot<'_>], pointer: &str) -> Result<Amount, Failure> {
    let text = required(values, AMOUNT, "amount", pointer)?;
    Amount::parse(text).map_err(|err| Failure::Line(format!("its amount ({pointer}): {err}")))
}

/// A date as Unix seconds; an absent date is `i64::MIN` (outside every window).
fn date(values: &[Slot<'_>], at: usize) -> Result<i64, Failure> {
    let Some(text) = values.get(at).and_then(Option::as_deref) else {
        return Ok(i64::MIN);
    };
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|err| Failure::Line(format!("its date {text:?} is not an RFC 3339 time: {err}")))
}

/// `amount` written in `currency`'s ISO 4217 minor units when that loses no digit, else as
/// its source wrote it (a code ISO does not know, more decimals than the currency has). What
/// a report shows then does not depend on the column type a ledger keeps amounts in:
/// PostgreSQL's `numeric(18, 4)` reads back 850 yen as `850.0000`, the statement as `850`.
fn in_minor_units(amount: Amount, currency: &str) -> Amount {
    crate::money::Currency::from_code(currency)
        .ok()
        .and_then(|c| u8::try_from(c.exponent()).ok())
        .and_then(|exponent| amount.with_scale(exponent))
        .unwrap_or(amount)
}

/// A line date as Unix seconds, `None` when absent or not an RFC 3339 time: an age, never a
/// reason to refuse a line.
fn lenient_date(values: &[Slot<'_>], at: usize) -> Option<i64> {
    values
        .get(at)
        .and_then(Option::as_deref)
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
}

fn add(sum: Amount, amount: Amount, cycle: &str, currency: &str) -> Result<Amount, Failure> {
    sum.checked_add(amount).map_err(|source| {
        Failure::Match(MatchError::Overflow {
            cycle: cycle.to_owned(),
            currency: currency.to_owned(),
            source,
        })
    })
}
